/* fastexec pool: the work queue, the workers, idle accounting, and the
 * completion of futures.
 *
 * Two objects make a pool.  `Pool` is the executor users hold (the C base of
 * fastexec.ThreadPoolExecutor); `_Core` holds the queue and is what worker
 * threads reference.  Workers never hold the executor, so an executor that is
 * dropped without shutdown() is collected, and its dealloc tells the core to
 * let its workers finish the queue and exit, as the stdlib's weakref callback
 * does.  See fastexec.h for the locking rules.
 */
#include "fastexec.h"

#include <errno.h>
#include <stddef.h>
#include <structmember.h>

/* A worker waiting for work: an entry of the core's idle stack.  Lives on the
 * worker's C stack for the worker's whole life. Guarded by core->mu. */
typedef struct fe_worker {
    pthread_cond_t cv;
    pthread_t tid;                /* to tell, after fork, which one forked */
    struct fe_worker *prev, *next;        /* on the idle stack */
    struct fe_worker *all_prev, *all_next;  /* on the list of all workers */
    fe_job *current;              /* the job in its hands, or NULL: read by
                                     the child after fork (see there) */
    int busy;                     /* counted in nrunning: from taking a job
                                     to counting its outcome */
    int woken;                    /* set by the thread that popped it */
} fe_worker;

typedef struct fe_core_s {
    PyObject_HEAD
    fe_state *st;
    PyObject *module;             /* keeps `st` alive */

    pthread_mutex_t mu;           /* guards everything below up to stats */
    fe_job *head, *tail;          /* FIFO of jobs waiting for a worker */
    Py_ssize_t nqueued;
    fe_worker *idle;              /* LIFO stack of waiting workers */
    fe_worker *all;               /* every running worker */
    int nidle;
    int nthreads;                 /* workers started and not yet exiting */
    int nspawning;                /* threads being started (spawn_worker) */
    pthread_cond_t spawn_cv;      /* signalled when nspawning drops to 0 */
    int nrunning;                 /* jobs in a worker's hands */
    int max_workers;
    int spinning;                 /* a worker is spinning for the next job */
    double spin_budget;           /* seconds it spins; adapts (see below) */
    double empty_since;           /* when a worker found the queue empty;
                                     0 once the next job came */
    double gap_avg;               /* moving average of those gaps */
    int gil_lag_ns;               /* how long a spinner that caught a job
                                     waits before taking the GIL (atomic) */
    int gil_fast_count;           /* GIL hand-offs without sleep in a row */
    int shutdown;                 /* no new work; workers leave when queue empty */
    int broken;                   /* an initializer failed */
    Py_ssize_t next_index;        /* suffix of the next thread's name */
    unsigned long long completed, failed, cancelled;

    /* Set once by _setup, read-only after (so read without the mutex). */
    double idle_timeout;          /* seconds; <= 0 means never */
    PyObject *initializer;        /* or NULL */
    PyObject *initargs;           /* tuple */
    PyObject *prefix;             /* str: thread name prefix */
    PyObject *threads;            /* the executor's _threads set */
    PyObject *orphans;            /* set: workers gone before being listed */
    PyObject *broken_msg;         /* str once broken */
    int configured;
    PyObject *weakreflist;        /* fastexec's registry of live pools */

    /* Fork (see "Fork" below): every core is on a process-wide list; what
     * the child inherited waits here for core._after_fork_child(). */
    struct fe_core_s *fork_next, *fork_prev;
    fe_job *fork_queued, *fork_running;
    int fork_survivor;            /* the forking thread is one of our workers */
} fe_core;

typedef struct {
    PyObject_HEAD
    fe_core *core;                /* never NULL after tp_new */
} fe_pool;

static const char BROKEN_MSG[] =
    "A thread initializer failed, the thread pool is not usable anymore";

/* ---------------------------------------------------------------- jobs */

fe_job *
fe_job_new(void)
{
    fe_job *job = PyMem_Calloc(1, sizeof(fe_job));
    if (job == NULL)
        PyErr_NoMemory();
    return job;
}

void
fe_job_free(fe_job *job)
{
    Py_XDECREF(job->fn);
    Py_XDECREF(job->args);
    Py_XDECREF(job->kwargs);
    Py_XDECREF(job->ctx);
    Py_XDECREF(job->future);
    Py_XDECREF(job->loop);
    Py_XDECREF((PyObject *)job->chan);
    Py_XDECREF(job->value);
    if (job->batch != NULL) {
        extern void fe_batch_decref(struct fe_mapbatch *);
        fe_batch_decref(job->batch);
    }
    PyMem_Free(job);
}

int
fe_job_traverse(fe_job *job, visitproc visit, void *arg)
{
    Py_VISIT(job->fn);
    Py_VISIT(job->args);
    Py_VISIT(job->kwargs);
    Py_VISIT(job->ctx);
    Py_VISIT(job->future);
    Py_VISIT(job->loop);
    Py_VISIT((PyObject *)job->chan);
    Py_VISIT(job->value);
    return 0;
}

/* Call the job's function; a new reference, or NULL with an exception set. */
static PyObject *
job_call(fe_job *job)
{
    PyObject *res;
    if (job->ctx != NULL) {
        if (PyContext_Enter(job->ctx) < 0)
            return NULL;
    }
    res = PyObject_Call(job->fn, job->args, job->kwargs);
    if (job->ctx != NULL) {
        PyObject *exc = res == NULL ? fe_fetch_exception() : NULL;
        if (PyContext_Exit(job->ctx) < 0) {
            /* Only fails if the context was not entered: cannot happen. */
            PyErr_WriteUnraisable(job->ctx);
        }
        if (exc != NULL) {
            fe_raise(exc);
            Py_DECREF(exc);
        }
    }
    return res;
}

/* ------------------------------------------------------------ map batch */

/* The shared state of one map() call: its results, filled in by workers and
 * taken in order by the iterator.  Refcounted by the iterator and the jobs
 * (under `mu`); freed with the GIL. */
enum { ITEM_PENDING = 0, ITEM_OK = 1, ITEM_ERROR = 2, ITEM_CANCELLED = 3 };

typedef struct fe_mapbatch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Py_ssize_t refcnt;
    Py_ssize_t n;                 /* items submitted */
    Py_ssize_t cap;
    PyObject **values;            /* owned results/exceptions, by index */
    unsigned char *status;
    Py_ssize_t waiting_for;       /* index the iterator sleeps on, or -1 */
    int abandoned;                /* iterator gone or failed: skip the rest */
} fe_mapbatch;

static fe_mapbatch *
batch_new(void)
{
    fe_mapbatch *b = PyMem_Calloc(1, sizeof(fe_mapbatch));
    if (b == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        PyMem_Free(b);
        PyErr_SetString(PyExc_OSError, "pthread_mutex_init failed");
        return NULL;
    }
    if (fe_cond_init(&b->cv) < 0) {
        pthread_mutex_destroy(&b->mu);
        PyMem_Free(b);
        PyErr_SetString(PyExc_OSError, "pthread_cond_init failed");
        return NULL;
    }
    b->refcnt = 1;
    b->waiting_for = -1;
    return b;
}

static void
batch_incref(fe_mapbatch *b)
{
    pthread_mutex_lock(&b->mu);
    b->refcnt++;
    pthread_mutex_unlock(&b->mu);
}

void
fe_batch_decref(fe_mapbatch *b)
{
    pthread_mutex_lock(&b->mu);
    Py_ssize_t left = --b->refcnt;
    pthread_mutex_unlock(&b->mu);
    if (left > 0)
        return;
    for (Py_ssize_t i = 0; i < b->n; i++)
        Py_XDECREF(b->values[i]);
    PyMem_Free(b->values);
    PyMem_Free(b->status);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    PyMem_Free(b);
}

/* Reserve slot n (called while map() is submitting, GIL held). */
static int
batch_grow(fe_mapbatch *b)
{
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    if (b->n == b->cap) {
        Py_ssize_t cap = b->cap ? b->cap * 2 : 16;
        PyObject **v = PyMem_Realloc(b->values, cap * sizeof(PyObject *));
        if (v != NULL)
            b->values = v;
        unsigned char *s = v ? PyMem_Realloc(b->status, cap) : NULL;
        if (s != NULL) {
            b->status = s;
            b->cap = cap;
        }
        else
            rc = -1;
    }
    if (rc == 0) {
        b->values[b->n] = NULL;
        b->status[b->n] = ITEM_PENDING;
        b->n++;
    }
    pthread_mutex_unlock(&b->mu);
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

/* Settle item i (steals `value`); wakes the iterator if it waits for i. */
static void
batch_settle(fe_mapbatch *b, Py_ssize_t i, int status, PyObject *value)
{
    pthread_mutex_lock(&b->mu);
    assert(b->status[i] == ITEM_PENDING);
    b->status[i] = (unsigned char)status;
    b->values[i] = value;
    if (b->waiting_for == i)
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int
batch_abandoned(fe_mapbatch *b)
{
    pthread_mutex_lock(&b->mu);
    int a = b->abandoned;
    pthread_mutex_unlock(&b->mu);
    return a;
}

/* ------------------------------------------------------------- the core */

#define CORE_ST(core) ((core)->st)

static inline void
queue_push(fe_core *c, fe_job *job)
{
    job->next = NULL;
    if (c->tail == NULL) {
        assert(c->head == NULL);
        c->head = job;
    }
    else
        c->tail->next = job;
    c->tail = job;
    __atomic_store_n(&c->nqueued, c->nqueued + 1, __ATOMIC_RELAXED);
}

static inline fe_job *
queue_pop(fe_core *c)
{
    fe_job *job = c->head;
    if (job != NULL) {
        c->head = job->next;
        if (c->head == NULL)
            c->tail = NULL;
        job->next = NULL;
        __atomic_store_n(&c->nqueued, c->nqueued - 1, __ATOMIC_RELAXED);
    }
    assert((c->head == NULL) == (c->nqueued == 0));
    return job;
}

static inline void
idle_push(fe_core *c, fe_worker *w)
{
    w->prev = NULL;
    w->next = c->idle;
    if (c->idle != NULL)
        c->idle->prev = w;
    c->idle = w;
    c->nidle++;
}

static inline void
idle_remove(fe_core *c, fe_worker *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else {
        assert(c->idle == w);
        c->idle = w->next;
    }
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    c->nidle--;
}

/* Wake the most recently idle worker (LIFO: its cache is warm, and the
 * others stay asleep long enough to reach idle_timeout). mu held. */
static inline int
wake_one(fe_core *c)
{
    fe_worker *w = c->idle;
    if (w == NULL)
        return 0;
    idle_remove(c, w);
    w->woken = 1;
    pthread_cond_signal(&w->cv);
    return 1;
}

static void
wake_all_locked(fe_core *c)
{
    while (wake_one(c))
        ;
}

static int
core_should_exit(fe_core *c)
{
    return c->head == NULL &&
           (c->shutdown || c->broken || fe_interpreter_shutdown(c->st));
}

/* A spawn ticket: a one-byte bytearray shared by the spawner and the thread
 * it starts, read and written under core->mu.  Thread.start() can raise after
 * the thread really started (a KeyboardInterrupt while it waits for the
 * thread to signal it began): the ticket says which of the two gives the
 * count back, so nthreads stays exact. */
enum { TICKET_NEW = 0, TICKET_STARTED = 1, TICKET_ABANDONED = 2 };

static inline char *
ticket_byte(PyObject *ticket)
{
    return PyByteArray_AS_STRING(ticket);
}

/* A spawn is over: let shutdown(wait=True) go on.  After a failure, decide
 * in this one hold of the lock who owns the thread's count: returns 1 if the
 * thread did start (it counted itself in: the spawner lists it), else gives
 * the count back, unless the thread already did (it gave up itself). */
static int
spawn_done(fe_core *c, int failed, PyObject *ticket)
{
    int started = 0;
    pthread_mutex_lock(&c->mu);
    if (failed) {
        char state = ticket != NULL ? ticket_byte(ticket)[0] : TICKET_NEW;
        if (state == TICKET_STARTED)
            started = 1;
        else if (state == TICKET_NEW) {
            /* The thread has not run (if it ever does, it finds the ticket
             * abandoned and leaves or counts itself: core_worker). */
            if (ticket != NULL)
                ticket_byte(ticket)[0] = TICKET_ABANDONED;
            c->nthreads--;
        }
    }
    if (--c->nspawning == 0)
        pthread_cond_broadcast(&c->spawn_cv);
    pthread_mutex_unlock(&c->mu);
    return started;
}

/* List thread `t` in the executor's _threads, unless it already left
 * (idle_timeout) and left a note in `orphans`.  Failures are reported: the
 * thread runs and is counted either way. */
static void
list_thread(fe_core *c, PyObject *t)
{
    if (PySet_Add(c->threads, t) < 0) {
        PyErr_WriteUnraisable(c->threads);
        return;
    }
    int gone = PySet_Discard(c->orphans, t);
    if (gone < 0 || (gone == 1 && PySet_Discard(c->threads, t) < 0))
        PyErr_WriteUnraisable(c->threads);
}

/* List the calling thread (a worker that its spawner could not list). */
static void
list_current_thread(fe_core *c)
{
    PyObject *me = PyObject_CallNoArgs(c->st->current_thread);
    if (me == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    list_thread(c, me);
    Py_DECREF(me);
}

/* Start one worker thread (a threading.Thread running core._worker).  Called
 * with the GIL, without mu, after nthreads and nspawning were raised for it;
 * lowers nspawning (and nthreads if no thread runs) whatever happens. */
static int
spawn_worker(fe_core *c)
{
    fe_state *st = c->st;
    Py_ssize_t index;
    PyObject *name = NULL, *target = NULL, *kwargs = NULL, *args = NULL;
    PyObject *ticket = NULL, *t = NULL, *r = NULL;
    int ticket_done = 0;
    pthread_mutex_lock(&c->mu);
    index = c->next_index++;
    pthread_mutex_unlock(&c->mu);

    name = PyUnicode_FromFormat("%U_%zd", c->prefix, index);
    if (name == NULL)
        goto error;
    target = PyObject_GetAttr((PyObject *)c, st->s_worker);
    if (target == NULL)
        goto error;
    ticket = PyByteArray_FromStringAndSize("\0", 1);
    if (ticket == NULL)
        goto error;
    args = PyTuple_Pack(1, ticket);
    if (args == NULL)
        goto error;
    kwargs = Py_BuildValue("{OOOOOO}", st->s_name, name, st->s_target, target,
                           st->s_args, args);
    if (kwargs == NULL)
        goto error;
    t = PyObject_Call(st->Thread, st->empty_tuple, kwargs);
    if (t == NULL)
        goto error;
    r = PyObject_CallMethodNoArgs(t, st->s_start);
    if (r == NULL) {
        /* If the thread did start, it is ours: list it, keep its count. */
        if (spawn_done(c, 1, ticket)) {
            PyObject *exc = fe_fetch_exception();
            list_thread(c, t);
            fe_raise(exc);
            Py_DECREF(exc);
        }
        ticket_done = 1;
        goto error;
    }
    /* Listed once started, as the stdlib (shutdown() joins what is listed;
     * start() let other threads run meanwhile). */
    list_thread(c, t);
    spawn_done(c, 0, ticket);
    Py_DECREF(r);
    Py_DECREF(t);
    Py_DECREF(kwargs);
    Py_DECREF(args);
    Py_DECREF(ticket);
    Py_DECREF(target);
    Py_DECREF(name);
    return 0;

error:
    if (!ticket_done)
        (void)spawn_done(c, 1, ticket);
    Py_XDECREF(t);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(ticket);
    Py_XDECREF(target);
    Py_XDECREF(name);
    return -1;
}

/* Raise the stdlib's error for a pool that takes no work; mu held by caller
 * is NOT required (flags are read under it by the caller). */
static void
raise_not_accepting(fe_core *c, int broken, int shutdown)
{
    fe_state *st = c->st;
    if (broken) {
        PyObject *msg = c->broken_msg ? c->broken_msg : NULL;
        if (msg)
            PyErr_SetObject(st->BrokenThreadPool, msg);
        else
            PyErr_SetString(st->BrokenThreadPool, BROKEN_MSG);
    }
    else if (shutdown)
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after shutdown");
    else
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot schedule new futures after "
                        "interpreter shutdown");
}

/* Queue a job and see that a worker will run it: wake an idle one, or start
 * one if below max_workers.  On error the job is freed (if it never entered
 * the queue) and -1 returned. GIL held. */
static void core_adapt_spin(fe_core *c);

static int
core_enqueue(fe_core *c, fe_job *job)
{
    int spawn = 0;
    pthread_mutex_lock(&c->mu);
    int broken = c->broken, shutdown = c->shutdown;
    if (broken || shutdown || fe_interpreter_shutdown(c->st)) {
        pthread_mutex_unlock(&c->mu);
        fe_job_free(job);
        raise_not_accepting(c, broken, shutdown);
        return -1;
    }
    if (c->head == NULL && c->empty_since > 0)
        core_adapt_spin(c);
    queue_push(c, job);
    /* A spinning worker takes the first queued job without being woken. */
    if (c->spinning && c->nqueued == 1)
        ;
    else if (!wake_one(c) && c->nthreads < c->max_workers) {
        c->nthreads++;
        c->nspawning++;
        spawn = 1;
    }
    pthread_mutex_unlock(&c->mu);
    if (spawn && spawn_worker(c) < 0) {
        /* As the stdlib: the job stays queued for the other workers, the
         * error reaches the caller. */
        return -1;
    }
    return 0;
}

/* Cancel a job that never ran (shutdown(cancel_futures=True)). GIL held. */
static void
job_cancel(fe_core *c, fe_job *job)
{
    fe_state *st = c->st;
    switch (job->kind) {
    case JOB_CF: {
        PyObject *r = PyObject_CallMethodNoArgs(job->future, st->s_cancel);
        if (r == NULL)
            PyErr_WriteUnraisable(job->future);
        Py_XDECREF(r);
        fe_job_free(job);
        break;
    }
    case JOB_ASYNC:
        Py_CLEAR(job->fn);
        Py_CLEAR(job->args);
        Py_CLEAR(job->kwargs);
        job->outcome = OUT_CANCEL;
        fe_channel_post(st, job);
        break;
    case JOB_MAP:
        Py_INCREF(st->CancelledError);  /* placeholder value, never raised as is */
        batch_settle(job->batch, job->index, ITEM_CANCELLED, st->CancelledError);
        fe_job_free(job);
        break;
    }
}

/* Fail a job that never ran with `exc` (the initializer broke the pool). */
static void
job_fail(fe_core *c, fe_job *job, PyObject *exc)
{
    fe_state *st = c->st;
    switch (job->kind) {
    case JOB_CF:
        if (fe_future_set_exception(job->future, exc) < 0)
            PyErr_WriteUnraisable(job->future);
        fe_job_free(job);
        break;
    case JOB_ASYNC:
        job->outcome = OUT_EXCEPTION;
        job->value = Py_NewRef(exc);
        fe_channel_post(st, job);
        break;
    case JOB_MAP:
        batch_settle(job->batch, job->index, ITEM_ERROR, Py_NewRef(exc));
        fe_job_free(job);
        break;
    }
}

/* Outcome of a job in a worker's hands, to count at the next lock. */
enum { DONE_NOTHING, DONE_OK, DONE_FAILED, DONE_CANCELLED };

/* Run one job, deliver its outcome, free it.  GIL held. Returns a DONE_*. */
static int
core_run_job(fe_core *c, fe_worker *w, fe_job *job)
{
    fe_state *st = c->st;
    PyObject *res, *r;
    int done;

    switch (job->kind) {
    case JOB_CF: {
        /* Our own Future (submit made it): its C entry points. */
        int running = fe_future_set_running(job->future);
        if (running <= 0) {
            /* Cancelled; or (< 0) already running or done, which only
             * someone else's meddling can cause: report it, skip the job. */
            if (running < 0)
                PyErr_WriteUnraisable(job->future);
            w->current = NULL;  /* before any finalizer can run */
            fe_job_free(job);
            return DONE_CANCELLED;
        }
        int rc;
        res = job_call(job);
        if (res != NULL) {
            rc = fe_future_set_result(job->future, res);
            Py_DECREF(res);
            done = DONE_OK;
        }
        else {
            PyObject *exc = fe_fetch_exception();
            rc = fe_future_set_exception(job->future, exc);
            Py_DECREF(exc);
            done = DONE_FAILED;
        }
        if (rc < 0)
            PyErr_WriteUnraisable(job->future);
        w->current = NULL;  /* before any finalizer can run */
            fe_job_free(job);
        return done;
    }

    case JOB_ASYNC:
        /* Cancelled while queued: don't run it (as the stdlib, whose
         * wrap_future cancels the concurrent future it waits on). */
        r = PyObject_CallMethodNoArgs(job->future, st->s_done);
        if (r == NULL) {
            PyErr_WriteUnraisable(job->future);
            w->current = NULL;  /* before any finalizer can run */
            fe_job_free(job);
            return DONE_CANCELLED;
        }
        if (r == Py_True) {
            Py_DECREF(r);
            w->current = NULL;  /* before any finalizer can run */
            fe_job_free(job);
            return DONE_CANCELLED;
        }
        Py_DECREF(r);
        res = job_call(job);
        Py_CLEAR(job->fn);
        Py_CLEAR(job->args);
        Py_CLEAR(job->kwargs);
        Py_CLEAR(job->ctx);
        if (res != NULL) {
            job->outcome = OUT_RESULT;
            job->value = res;
            done = DONE_OK;
        }
        else {
            job->outcome = OUT_EXCEPTION;
            job->value = fe_fetch_exception();
            done = DONE_FAILED;
        }
        w->current = NULL;
        fe_channel_post(st, job);
        return done;

    case JOB_MAP:
        if (batch_abandoned(job->batch)) {
            w->current = NULL;  /* before any finalizer can run */
            fe_job_free(job);
            return DONE_CANCELLED;
        }
        res = job_call(job);
        if (res != NULL) {
            batch_settle(job->batch, job->index, ITEM_OK, res);
            done = DONE_OK;
        }
        else {
            batch_settle(job->batch, job->index, ITEM_ERROR, fe_fetch_exception());
            done = DONE_FAILED;
        }
        w->current = NULL;  /* before any finalizer can run */
            fe_job_free(job);
        return done;
    }
    Py_UNREACHABLE();
}

/* Spinning: a worker that just finished a job often gets the next one a few
 * tens of microseconds later (a sequential round trip: the loop wakes, reads
 * the result, submits again).  Sleeping on the condition variable would cost
 * a futex wake-up and a cross-core reschedule (30-45 us measured here) each
 * time, so one worker at a time (never all: on 2 cores that slows everybody)
 * polls the queue, without the GIL, for up to spin_budget before it sleeps.
 *
 * The budget follows the pool's rhythm: each time a job arrives at an empty
 * queue, the time since a worker found it empty (the gap) feeds a moving
 * average, and the spin covers that average with a margin while it is below
 * SPIN_MAX; work that comes more rarely gets SPIN_MIN, and an idle pool
 * burns no CPU.  (Adapting on the spin's own success instead collapsed for
 * good after a few misses: a budget that never catches never grows.) */
#define SPIN_MAX 150e-6
#define SPIN_MIN 2e-6

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Returns 1 if a job came while spinning. */
static int
core_spin(fe_core *c)
{
    double end = fe_monotonic() + c->spin_budget;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(&c->nqueued, __ATOMIC_RELAXED) > 0)
                return 1;
            cpu_relax();
        }
        if (fe_monotonic() >= end)
            return 0;
    }
}

/* The GIL hand-off.  A job caught by spinning was just queued by a thread
 * that still holds the GIL (an event loop on its way back to its selector,
 * which is where it lets the GIL go).  Asking for the GIL at once would put
 * the spinner to sleep on the GIL's condition variable and cost a second
 * wake-up (measured: one per round trip, ~40 us).  So the spinner first
 * waits gil_lag_ns more, still spinning, and then learns from how long the
 * GIL took: a wait that slept means the lag was too short (+2 us); sixteen
 * that didn't let it shrink a little (-0.25 us).  Measured on a sequential
 * round trip: the lag settles at 1-2 us and under 1% of the waits sleep
 * (shrinking after every success instead: ~10% slept, each costing the
 * ~40 us the lag is there to save). */
#define GIL_LAG_MAX_NS 40000
#define GIL_LAG_UP_NS 2000
#define GIL_LAG_DOWN_NS 250
#define GIL_LAG_DOWN_EVERY 16
#define GIL_SLEPT 8e-6

static void
gil_lag_wait(fe_core *c)
{
    int lag = __atomic_load_n(&c->gil_lag_ns, __ATOMIC_RELAXED);
    if (lag <= 0)
        return;
    double end = fe_monotonic() + lag * 1e-9;
    while (fe_monotonic() < end) {
        for (int i = 0; i < 16; i++)
            cpu_relax();
    }
}

/* GIL held (so one worker at a time updates the lag). */
static void
gil_lag_learn(fe_core *c, double took)
{
    int lag = __atomic_load_n(&c->gil_lag_ns, __ATOMIC_RELAXED);
    if (took > GIL_SLEPT) {
        lag += GIL_LAG_UP_NS;
        if (lag > GIL_LAG_MAX_NS)
            lag = GIL_LAG_MAX_NS;
        c->gil_fast_count = 0;
    }
    else if (++c->gil_fast_count >= GIL_LAG_DOWN_EVERY) {
        c->gil_fast_count = 0;
        lag = lag > GIL_LAG_DOWN_NS ? lag - GIL_LAG_DOWN_NS : 0;
    }
    __atomic_store_n(&c->gil_lag_ns, lag, __ATOMIC_RELAXED);
}

/* A job arrives at an empty queue: learn the gap.  mu held. */
static void
core_adapt_spin(fe_core *c)
{
    double gap = fe_monotonic() - c->empty_since;
    c->empty_since = 0;
    if (gap > 10 * SPIN_MAX)
        gap = 10 * SPIN_MAX;    /* one long pause weighs like a few */
    c->gap_avg = c->gap_avg > 0 ? 0.75 * c->gap_avg + 0.25 * gap : gap;
    double budget = 1.5 * c->gap_avg + 5e-6;
    c->spin_budget = c->gap_avg > SPIN_MAX ? SPIN_MIN
                     : budget > SPIN_MAX ? SPIN_MAX : budget;
}

/* Take the next job, waiting for one without the GIL.  Counts the previous
 * job's outcome under the same lock.  Returns NULL when the worker must exit
 * (*idle_exit tells whether for idle_timeout); nthreads was lowered then. */
static fe_job *
core_next_job(fe_core *c, fe_worker *w, int prev_done, int *idle_exit)
{
    fe_job *job;
    *idle_exit = 0;

    pthread_mutex_lock(&c->mu);
    if (prev_done != DONE_NOTHING) {
        c->nrunning--;
        w->busy = 0;
        if (prev_done == DONE_CANCELLED)
            c->cancelled++;
        else {
            c->completed++;
            if (prev_done == DONE_FAILED)
                c->failed++;
        }
    }
    for (;;) {
        /* Jobs leave the queue only here, with the GIL held: the garbage
         * collector (which holds the GIL for a whole collection) then sees
         * the same queue in each of its passes (see core_traverse).  When
         * work is queued, a worker runs it back to back, keeping the GIL. */
        job = queue_pop(c);
        if (job != NULL) {
            w->current = job;
            w->busy = 1;
            c->nrunning++;
            pthread_mutex_unlock(&c->mu);
            return job;
        }
        if (core_should_exit(c)) {
            c->nthreads--;
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        if (c->empty_since == 0)
            c->empty_since = fe_monotonic();
        int spin = !c->spinning && c->spin_budget > 0;
        int leave = 0, caught = 0;
        double gil_asked = 0;
        if (spin)
            c->spinning = 1;
        pthread_mutex_unlock(&c->mu);

        /* Wait for work without the GIL; take it (above) once we hold the
         * GIL again: if another worker took it meanwhile, wait again. */
        Py_BEGIN_ALLOW_THREADS
        if (spin && core_spin(c)) {
            caught = 1;
            gil_lag_wait(c);
        }
        pthread_mutex_lock(&c->mu);
        if (spin) {
            /* Under the lock that submit takes, so that a submit that saw
             * `spinning` (and woke nobody) is sure to be seen here. */
            c->spinning = 0;
        }
        while (c->head == NULL) {
            if (core_should_exit(c)) {
                c->nthreads--;
                leave = 1;
                break;
            }
            w->woken = 0;
            idle_push(c, w);
            int rc;
            if (c->idle_timeout > 0) {
                struct timespec deadline = fe_deadline(c->idle_timeout);
                do {
                    rc = pthread_cond_timedwait(&w->cv, &c->mu, &deadline);
                } while (!w->woken && rc == 0);
            }
            else {
                do {
                    rc = pthread_cond_wait(&w->cv, &c->mu);
                } while (!w->woken && rc == 0);
            }
            if (!w->woken) {
                /* Timed out (still on the stack: take ourselves off it). */
                idle_remove(c, w);
                if (c->head == NULL) {
                    c->nthreads--;
                    *idle_exit = 1;
                    leave = 1;
                    break;
                }
            }
        }
        pthread_mutex_unlock(&c->mu);
        if (caught)
            gil_asked = fe_monotonic();
        Py_END_ALLOW_THREADS
        if (caught)
            gil_lag_learn(c, fe_monotonic() - gil_asked);
        if (leave)
            return NULL;
        pthread_mutex_lock(&c->mu);
    }
}

/* The initializer failed: break the pool, fail what is queued (as the
 * stdlib's _initializer_failed). GIL held, exception `exc` in hand. */
static void
core_initializer_failed(fe_core *c, PyObject *exc)
{
    fe_state *st = c->st;
    /* LOGGER.critical('Exception in initializer:', exc_info=exc) */
    PyObject *meth = PyObject_GetAttr(st->logger, st->s_critical);
    if (meth != NULL) {
        PyObject *kw = Py_BuildValue("{OO}", st->s_exc_info, exc);
        PyObject *args = Py_BuildValue("(s)", "Exception in initializer:");
        PyObject *r = (kw && args) ? PyObject_Call(meth, args, kw) : NULL;
        Py_XDECREF(r);
        Py_XDECREF(kw);
        Py_XDECREF(args);
        Py_DECREF(meth);
    }
    if (PyErr_Occurred())
        PyErr_WriteUnraisable((PyObject *)c);

    PyObject *msg = PyUnicode_FromString(BROKEN_MSG);
    if (msg == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (c->broken_msg == NULL) {
        c->broken_msg = msg;
        msg = NULL;
    }
    c->broken = 1;
    fe_job *list = c->head;
    c->head = c->tail = NULL;
    c->nqueued = 0;
    wake_all_locked(c);
    pthread_mutex_unlock(&c->mu);
    Py_XDECREF(msg);

    PyObject *err = PyObject_CallOneArg(st->BrokenThreadPool, c->broken_msg);
    if (err == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        err = Py_NewRef(Py_None);  /* still free the jobs below */
    }
    while (list != NULL) {
        fe_job *job = list;
        list = job->next;
        job->next = NULL;
        if (err != Py_None)
            job_fail(c, job, err);
        else
            fe_job_free(job);
    }
    Py_DECREF(err);
}

/* core._worker(ticket): the body of every worker thread. */
static PyObject *
core_worker(fe_core *c, PyObject *ticket)
{
    fe_state *st = c->st;
    fe_worker w;
    int idle_exit = 0, done = DONE_NOTHING, self_listed = 0;

    if (!PyByteArray_Check(ticket) || PyByteArray_GET_SIZE(ticket) != 1) {
        PyErr_SetString(PyExc_TypeError, "_worker() takes a spawn ticket");
        return NULL;
    }
    if (fe_cond_init(&w.cv) < 0) {
        /* No worker after all: nthreads was raised for us. */
        pthread_mutex_lock(&c->mu);
        if (ticket_byte(ticket)[0] != TICKET_ABANDONED)
            c->nthreads--;
        ticket_byte(ticket)[0] = TICKET_ABANDONED;
        pthread_mutex_unlock(&c->mu);
        PyErr_SetString(PyExc_OSError, "pthread_cond_init failed");
        return NULL;
    }
    w.prev = w.next = NULL;
    w.current = NULL;
    w.busy = 0;
    w.woken = 0;
    w.tid = pthread_self();
    /* On the list of all workers from the start (the initializer included),
     * so that a fork() from inside this thread knows it survives. */
    pthread_mutex_lock(&c->mu);
    if (ticket_byte(ticket)[0] == TICKET_ABANDONED) {
        /* Our spawner's start() failed and gave our count back, yet here
         * we are.  If another thread took our place, leave; else count
         * ourselves, and list ourselves below. */
        if (c->nthreads >= c->max_workers) {
            pthread_mutex_unlock(&c->mu);
            pthread_cond_destroy(&w.cv);
            Py_RETURN_NONE;
        }
        c->nthreads++;
        self_listed = 1;
    }
    ticket_byte(ticket)[0] = TICKET_STARTED;
    w.all_prev = NULL;
    w.all_next = c->all;
    if (c->all != NULL)
        c->all->all_prev = &w;
    c->all = &w;
    pthread_mutex_unlock(&c->mu);
    if (self_listed)
        list_current_thread(c);

    if (c->initializer != NULL) {
        PyObject *r = PyObject_Call(c->initializer, c->initargs, NULL);
        if (r == NULL) {
            PyObject *exc = fe_fetch_exception();
            core_initializer_failed(c, exc);
            Py_DECREF(exc);
            pthread_mutex_lock(&c->mu);
            c->nthreads--;
            pthread_mutex_unlock(&c->mu);
            goto leave;
        }
        Py_DECREF(r);
    }

    for (;;) {
        fe_job *job = core_next_job(c, &w, done, &idle_exit);
        if (job == NULL)
            break;
        done = core_run_job(c, &w, job);
        /* A job's exception never escapes to here; anything else that set
         * an error (a failing set_result) was reported as unraisable. */
        assert(!PyErr_Occurred());
    }

leave:
    pthread_mutex_lock(&c->mu);
    if (w.all_prev != NULL)
        w.all_prev->all_next = w.all_next;
    else
        c->all = w.all_next;
    if (w.all_next != NULL)
        w.all_next->all_prev = w.all_prev;
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&w.cv);

    if (idle_exit) {
        /* Leave _threads, so it lists the live workers; if our spawner has
         * not listed us yet, leave it a note to drop us (see list_thread). */
        PyObject *me = PyObject_CallNoArgs(st->current_thread);
        int found = me ? PySet_Discard(c->threads, me) : -1;
        if (found == 0 && PySet_Add(c->orphans, me) < 0)
            found = -1;
        if (found < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(me);
    }
    Py_RETURN_NONE;
}

/* core.wait_spawning(): wait, without the GIL, until no thread is being
 * started, so that every thread that will run accepted work is listed in
 * _threads (shutdown(wait=True) then joins them all, as the stdlib's, whose
 * submit starts threads under the executor's shutdown lock). */
static PyObject *
core_wait_spawning(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&c->mu);
    while (c->nspawning > 0)
        pthread_cond_wait(&c->spawn_cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* core.shutdown(cancel_futures): stop taking work; wake the idle workers so
 * they leave once the queue is empty. Doesn't wait (the caller joins). */
static void
core_shutdown_impl(fe_core *c, int cancel_futures)
{
    fe_job *list = NULL;
    pthread_mutex_lock(&c->mu);
    c->shutdown = 1;
    if (cancel_futures) {
        list = c->head;
        c->cancelled += c->nqueued;
        c->head = c->tail = NULL;
        c->nqueued = 0;
    }
    wake_all_locked(c);
    pthread_mutex_unlock(&c->mu);
    while (list != NULL) {
        fe_job *job = list;
        list = job->next;
        job->next = NULL;
        job_cancel(c, job);
    }
}

static PyObject *
core_shutdown(fe_core *c, PyObject *arg)
{
    int cancel = PyObject_IsTrue(arg);
    if (cancel < 0)
        return NULL;
    core_shutdown_impl(c, cancel);
    Py_RETURN_NONE;
}

static PyObject *
core_wake_all(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&c->mu);
    wake_all_locked(c);
    pthread_mutex_unlock(&c->mu);
    Py_RETURN_NONE;
}

static PyObject *
core_thread_list(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    if (c->threads == NULL)
        return PyList_New(0);
    return PySequence_List(c->threads);
}

static PyObject *
core_stats(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&c->mu);
    int max_workers = c->max_workers, threads = c->nthreads;
    int idle = c->nidle + c->spinning;
    int running = c->nrunning;
    Py_ssize_t queued = c->nqueued;
    unsigned long long completed = c->completed, failed = c->failed;
    unsigned long long cancelled = c->cancelled;
    pthread_mutex_unlock(&c->mu);
    return Py_BuildValue("{sisisisnsisKsKsK}",
                         "max_workers", max_workers, "threads", threads,
                         "idle", idle, "queued", queued, "running", running,
                         "completed", completed, "failed", failed,
                         "cancelled", cancelled);
}

/* Fork.  fork() must not copy a queue in the middle of a change, so every
 * core's mutex is held across it.  That is done by pthread_atfork handlers,
 * inside fork() itself, and not by a Python before-fork hook: between Python
 * hooks the GIL can pass to a worker, which could then block on the mutex
 * while holding the GIL that the forking thread needs (a deadlock CPython's
 * own test_hang_global_shutdown_lock found).  Inside fork() the forking
 * thread holds the GIL and runs no Python code, so whoever holds a core's
 * mutex then is a thread without the GIL, which releases it without waiting
 * for anything.
 *
 * In the child the workers are gone, but their memory was copied: their
 * fe_worker records (on their stacks) still say which job each had in hand.
 * The child handler, plain C, resets the core and keeps the inherited work
 * aside; core._after_fork_child() (fastexec's Python after-fork hook) then
 * deals with it.  The work is the parent's: the parent runs it, the child
 * never does.  Where it can be done without touching anything but the
 * future (a concurrent future with no Condition, waiter or callback), the
 * child's copy is settled: a queued call cancelled, a running one failed
 * with RuntimeError.  Anything else is dropped untouched, as the stdlib
 * leaves it: its locks (a future's Condition, a map batch's mutex) may be
 * held by threads that are gone, and its callbacks belong to the parent. */
static pthread_mutex_t fork_registry_mu = PTHREAD_MUTEX_INITIALIZER;
static fe_core *fork_registry = NULL;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
fork_prepare(void)
{
    pthread_mutex_lock(&fork_registry_mu);
    for (fe_core *c = fork_registry; c != NULL; c = c->fork_next)
        pthread_mutex_lock(&c->mu);
}

static void
fork_parent(void)
{
    for (fe_core *c = fork_registry; c != NULL; c = c->fork_next)
        pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&fork_registry_mu);
}

static void
fork_child(void)
{
    for (fe_core *c = fork_registry; c != NULL; c = c->fork_next) {
        /* Queued jobs, then the ones workers had in hand. */
        if (c->head != NULL) {
            c->tail->next = c->fork_queued;
            c->fork_queued = c->head;
        }
        c->head = c->tail = NULL;
        c->nqueued = 0;
        /* The thread that forks survives: if it is one of our workers (a
         * job or an initializer called fork()), it stays ours, with the job
         * in its hands.  The others are gone. */
        pthread_t me = pthread_self();
        fe_worker *survivor = NULL;
        for (fe_worker *w = c->all; w != NULL; w = w->all_next) {
            if (pthread_equal(w->tid, me))
                survivor = w;
            else if (w->current != NULL) {
                w->current->next = c->fork_running;
                c->fork_running = w->current;
            }
        }
        if (survivor != NULL)
            survivor->all_prev = survivor->all_next = NULL;
        c->all = survivor;
        c->fork_survivor = survivor != NULL;
        c->idle = NULL;
        c->nidle = 0;
        c->spinning = 0;
        c->nthreads = survivor != NULL;
        c->nrunning = survivor != NULL && survivor->busy;
        /* Threads that were being started are gone; so are the waiters of
         * spawn_cv, whose state is theirs: start it afresh. */
        c->nspawning = 0;
        (void)fe_cond_init(&c->spawn_cv);
        /* This thread locked it in fork_prepare: it owns it here too. */
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&fork_registry_mu);
}

static void
fork_install(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static int
fork_register(fe_core *c)
{
    if (pthread_once(&fork_once, fork_install) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_once failed");
        return -1;
    }
    pthread_mutex_lock(&fork_registry_mu);
    c->fork_prev = NULL;
    c->fork_next = fork_registry;
    if (fork_registry != NULL)
        fork_registry->fork_prev = c;
    fork_registry = c;
    pthread_mutex_unlock(&fork_registry_mu);
    return 0;
}

static void
fork_unregister(fe_core *c)
{
    pthread_mutex_lock(&fork_registry_mu);
    if (c->fork_prev != NULL)
        c->fork_prev->fork_next = c->fork_next;
    else if (fork_registry == c)
        fork_registry = c->fork_next;
    if (c->fork_next != NULL)
        c->fork_next->fork_prev = c->fork_prev;
    c->fork_next = c->fork_prev = NULL;
    pthread_mutex_unlock(&fork_registry_mu);
}

/* _fastexec._live_pools(): the cores on the registry that were set up (a
 * list of new references).  GIL held; a core being deallocated (its count
 * already 0, e.g. while its weakrefs are cleared) is skipped. */
PyObject *
fe_live_cores(fe_state *st)
{
    /* Only C under the registry mutex: a Python allocation could collect
     * garbage, and a core freed then would take the mutex again. */
    Py_ssize_t n = 0, cap = 0;
    PyObject **found = NULL;
    pthread_mutex_lock(&fork_registry_mu);
    for (fe_core *c = fork_registry; c != NULL; c = c->fork_next)
        cap++;
    found = cap ? PyMem_RawMalloc(cap * sizeof(PyObject *)) : NULL;
    for (fe_core *c = fork_registry; c != NULL && found != NULL; c = c->fork_next) {
        if (c->st == st && c->configured && fe_try_incref((PyObject *)c))
            found[n++] = (PyObject *)c;
    }
    pthread_mutex_unlock(&fork_registry_mu);
    if (cap > 0 && found == NULL)
        return PyErr_NoMemory();
    PyObject *list = PyList_New(n);
    if (list != NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            PyList_SET_ITEM(list, i, found[i]);
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(found[i]);
    }
    PyMem_RawFree(found);
    return list;
}

static PyObject *
core_after_fork_child(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&c->mu);
    fe_job *queued = c->fork_queued, *running = c->fork_running;
    c->fork_queued = c->fork_running = NULL;
    int survivor = c->fork_survivor;
    c->fork_survivor = 0;
    pthread_mutex_unlock(&c->mu);
    if (c->threads != NULL) {
        PySet_Clear(c->threads);
        if (survivor)
            list_current_thread(c);   /* this worker called fork() */
    }

    PyObject *err = NULL;
    for (int k = 0; k < 2; k++) {
        fe_job *list = k ? running : queued;
        while (list != NULL) {
            fe_job *job = list;
            list = job->next;
            job->next = NULL;
            if (job->kind == JOB_CF && fe_future_lock_free(job->future)) {
                if (k == 0) {
                    job_cancel(c, job);
                    continue;
                }
                if (err == NULL)
                    err = PyObject_CallFunction(
                        PyExc_RuntimeError, "s",
                        "the worker running this call did not survive "
                        "os.fork() (this is the child process; the parent "
                        "runs it)");
                if (err != NULL) {
                    job_fail(c, job, err);
                    continue;
                }
                PyErr_WriteUnraisable((PyObject *)c);
            }
            /* Never lock a map batch here (see above): leave its memory. */
            job->batch = NULL;
            fe_job_free(job);
        }
    }
    Py_XDECREF(err);
    Py_RETURN_NONE;
}

static PyObject *
core_get_is_shutdown(fe_core *c, void *Py_UNUSED(closure))
{
    pthread_mutex_lock(&c->mu);
    int s = c->shutdown;
    pthread_mutex_unlock(&c->mu);
    return PyBool_FromLong(s);
}

static PyObject *
core_get_broken(fe_core *c, void *Py_UNUSED(closure))
{
    pthread_mutex_lock(&c->mu);
    PyObject *msg = c->broken ? Py_XNewRef(c->broken_msg) : NULL;
    pthread_mutex_unlock(&c->mu);
    if (msg == NULL)
        Py_RETURN_NONE;
    return msg;
}

static int
core_traverse(fe_core *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->module);
    Py_VISIT(c->initializer);
    Py_VISIT(c->initargs);
    Py_VISIT(c->prefix);
    Py_VISIT(c->threads);
    Py_VISIT(c->orphans);
    Py_VISIT(c->broken_msg);
    /* The queued jobs.  The queue must look the same in every pass of a
     * collection (else objects visited in one pass and not the next are
     * taken for garbage, and finalized while still queued): it only changes
     * with the GIL held, which the collector holds, and the lock is always
     * taken (a holder never waits for the GIL: rule 2 of fastexec.h). */
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    for (fe_job *j = c->head; j != NULL && rc == 0; j = j->next)
        rc = fe_job_traverse(j, visit, arg);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int
core_clear(fe_core *c)
{
    /* Only reached when no worker can see the core (workers hold it). */
    fe_job *list;
    pthread_mutex_lock(&c->mu);
    list = c->head;
    c->head = c->tail = NULL;
    c->nqueued = 0;
    c->shutdown = 1;
    pthread_mutex_unlock(&c->mu);
    while (list != NULL) {
        fe_job *job = list;
        list = job->next;
        fe_job_free(job);
    }
    for (int k = 0; k < 2; k++) {
        list = k ? c->fork_running : c->fork_queued;
        if (k)
            c->fork_running = NULL;
        else
            c->fork_queued = NULL;
        while (list != NULL) {
            fe_job *job = list;
            list = job->next;
            fe_job_free(job);
        }
    }
    Py_CLEAR(c->initializer);
    Py_CLEAR(c->initargs);
    Py_CLEAR(c->prefix);
    Py_CLEAR(c->threads);
    Py_CLEAR(c->orphans);
    Py_CLEAR(c->broken_msg);
    return 0;
}

static void
core_dealloc(fe_core *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    fork_unregister(c);
    if (c->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)c);
    core_clear(c);
    Py_CLEAR(c->module);
    pthread_cond_destroy(&c->spawn_cv);
    pthread_mutex_destroy(&c->mu);
    tp->tp_free((PyObject *)c);
    Py_DECREF(tp);
}

static fe_core *
core_new(fe_state *st, PyObject *module)
{
    fe_core *c = PyObject_GC_New(fe_core, st->Core_Type);
    if (c == NULL)
        return NULL;
    memset((char *)c + sizeof(PyObject), 0, sizeof(fe_core) - sizeof(PyObject));
    c->st = st;
    c->module = Py_NewRef(module);
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        Py_DECREF(c->module);
        PyObject_GC_Del(c);
        PyErr_SetString(PyExc_OSError, "pthread_mutex_init failed");
        return NULL;
    }
    if (fe_cond_init(&c->spawn_cv) < 0) {
        pthread_mutex_destroy(&c->mu);
        Py_DECREF(c->module);
        PyObject_GC_Del(c);
        PyErr_SetString(PyExc_OSError, "pthread_cond_init failed");
        return NULL;
    }
    c->max_workers = 1;
    c->spin_budget = SPIN_MAX;
    if (fork_register(c) < 0) {
        pthread_cond_destroy(&c->spawn_cv);
        pthread_mutex_destroy(&c->mu);
        Py_DECREF(c->module);
        PyObject_GC_Del(c);
        return NULL;
    }
    fe_enable_try_incref((PyObject *)c);
    PyObject_GC_Track(c);
    return c;
}

static PyMethodDef core_methods[] = {
    {"_worker", (PyCFunction)core_worker, METH_O,
     "Run as a worker thread until the pool is shut down (internal)."},
    {"wait_spawning", (PyCFunction)core_wait_spawning, METH_NOARGS,
     "Wait until no worker thread is being started (internal)."},
    {"shutdown", (PyCFunction)core_shutdown, METH_O,
     "shutdown(cancel_futures): stop taking work, wake idle workers."},
    {"wake_all", (PyCFunction)core_wake_all, METH_NOARGS, NULL},
    {"thread_list", (PyCFunction)core_thread_list, METH_NOARGS, NULL},
    {"stats", (PyCFunction)core_stats, METH_NOARGS, NULL},
    {"_after_fork_child", (PyCFunction)core_after_fork_child, METH_NOARGS, NULL},
    {NULL, NULL}
};

static PyGetSetDef core_getset[] = {
    {"is_shutdown", (getter)core_get_is_shutdown, NULL, NULL, NULL},
    {"broken", (getter)core_get_broken, NULL, NULL, NULL},
    {NULL}
};

static PyMemberDef core_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(fe_core, weakreflist), READONLY},
    {NULL}
};

static PyType_Slot core_slots[] = {
    {Py_tp_members, core_members},
    {Py_tp_doc, "The queue and workers of a fastexec pool (internal)."},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, core_methods},
    {Py_tp_getset, core_getset},
    {0, NULL}
};

static PyType_Spec core_spec = {
    .name = "fastexec._fastexec._Core",
    .basicsize = sizeof(fe_core),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots,
};

/* ------------------------------------------------------------ map iter */

typedef struct {
    PyObject_HEAD
    fe_state *st;
    fe_mapbatch *batch;
    Py_ssize_t next;              /* the index to yield next */
    double deadline;              /* monotonic; < 0 for no timeout */
    int finished;
} fe_mapiter;

/* Stop the calls that haven't started.  As the stdlib's map generator, only
 * once iteration has begun: an iterator dropped or closed before its first
 * next() cancels nothing (its generator's finally never ran). */
static void mapiter_abandon(fe_mapiter *it);

static void
mapiter_drop(fe_mapiter *it)
{
    if (it->next > 0)
        mapiter_abandon(it);
}

static void
mapiter_abandon(fe_mapiter *it)
{
    if (it->batch == NULL || it->finished)
        return;
    it->finished = 1;
    pthread_mutex_lock(&it->batch->mu);
    it->batch->abandoned = 1;
    pthread_mutex_unlock(&it->batch->mu);
}

/* Wait for item i without the GIL; returns its status, or -1 with an
 * exception (a signal handler raised, e.g. KeyboardInterrupt). */
static int
mapiter_wait(fe_mapiter *it, Py_ssize_t i, int *timed_out)
{
    fe_mapbatch *b = it->batch;
    int status;
    *timed_out = 0;
    for (;;) {
        int rc = 0;
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&b->mu);
        /* Wake at least every 50 ms to let signal handlers run. */
        double slice = 0.05;
        if (it->deadline >= 0) {
            double left = it->deadline - fe_monotonic();
            if (left < slice)
                slice = left;
        }
        if (b->status[i] == ITEM_PENDING && slice > 0) {
            struct timespec ts = fe_deadline(slice);
            b->waiting_for = i;
            while (b->status[i] == ITEM_PENDING && rc == 0)
                rc = pthread_cond_timedwait(&b->cv, &b->mu, &ts);
            b->waiting_for = -1;
        }
        status = b->status[i];
        pthread_mutex_unlock(&b->mu);
        Py_END_ALLOW_THREADS
        /* After every wait, not only a fruitless one: the stdlib's waits
         * (lock acquires) let a Ctrl-C interrupt them, and results arriving
         * more often than the slice must not hide it (on 3.13 nothing else
         * ran the handler before the next item). */
        if (PyErr_CheckSignals() < 0)
            return -1;
        if (status != ITEM_PENDING)
            return status;
        if (it->deadline >= 0 && fe_monotonic() >= it->deadline) {
            *timed_out = 1;
            return ITEM_PENDING;
        }
    }
}

static PyObject *
mapiter_next(fe_mapiter *it)
{
    fe_mapbatch *b = it->batch;
    if (it->finished || b == NULL || it->next >= b->n) {
        it->finished = 1;
        return NULL;
    }
    Py_ssize_t i = it->next++;
    int timed_out;
    int status = mapiter_wait(it, i, &timed_out);
    if (status < 0 || timed_out) {
        mapiter_abandon(it);
        if (timed_out)
            PyErr_SetNone(it->st->TimeoutError);
        return NULL;
    }
    pthread_mutex_lock(&b->mu);
    PyObject *value = b->values[i];
    b->values[i] = NULL;
    pthread_mutex_unlock(&b->mu);
    if (status == ITEM_OK)
        return value;
    mapiter_abandon(it);
    if (status == ITEM_CANCELLED) {
        Py_XDECREF(value);
        PyErr_SetNone(it->st->CancelledError);
        return NULL;
    }
    fe_raise(value);
    Py_DECREF(value);
    return NULL;
}

static int
mapiter_traverse(fe_mapiter *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    /* The results not yet taken (a cycle may run through them).  They are
     * stored and taken only with the GIL held, as this runs, so no lock is
     * needed; none is taken, because the iterator's thread holds the batch
     * mutex without the GIL while it waits, and a visit skipped in one pass
     * of a collection and made in another would finalize live results. */
    fe_mapbatch *b = it->batch;
    if (b != NULL) {
        for (Py_ssize_t i = it->next; i < b->n; i++) {
            if (b->values[i] != NULL && b->values[i] != it->st->CancelledError)
                Py_VISIT(b->values[i]);
        }
    }
    return 0;
}

static int
mapiter_clear(fe_mapiter *it)
{
    if (it->batch != NULL) {
        /* As the stdlib's map generator: dropping it cancels what's left. */
        mapiter_drop(it);
        fe_mapbatch *b = it->batch;
        it->batch = NULL;
        fe_batch_decref(b);
    }
    return 0;
}

static void
mapiter_dealloc(fe_mapiter *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    mapiter_clear(it);
    tp->tp_free((PyObject *)it);
    Py_DECREF(tp);
}

static PyObject *
mapiter_close(fe_mapiter *it, PyObject *Py_UNUSED(ignored))
{
    mapiter_drop(it);
    Py_RETURN_NONE;
}

static PyMethodDef mapiter_methods[] = {
    {"close", (PyCFunction)mapiter_close, METH_NOARGS,
     "Stop iterating; calls that haven't started are cancelled."},
    {NULL, NULL}
};

static PyType_Slot mapiter_slots[] = {
    {Py_tp_dealloc, mapiter_dealloc},
    {Py_tp_traverse, mapiter_traverse},
    {Py_tp_clear, mapiter_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, mapiter_next},
    {Py_tp_methods, mapiter_methods},
    {0, NULL}
};

static PyType_Spec mapiter_spec = {
    .name = "fastexec._fastexec.MapIterator",
    .basicsize = sizeof(fe_mapiter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = mapiter_slots,
};

/* ------------------------------------------------------------ the pool */

static PyObject *
pool_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    fe_pool *self = (fe_pool *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject *module = fe_module_by_type(type);
    if (module == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    fe_state *st = fe_state_of_module(module);
    self->core = core_new(st, module);
    if (self->core == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* _setup(max_workers, prefix, initializer, initargs, idle_timeout, threads) */
static PyObject *
pool_setup(fe_pool *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_setup() takes 6 arguments");
        return NULL;
    }
    fe_core *c = self->core;
    long max_workers = PyLong_AsLong(args[0]);
    if (max_workers == -1 && PyErr_Occurred())
        return NULL;
    if (max_workers <= 0 || max_workers > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "max_workers must be greater than 0");
        return NULL;
    }
    if (!PyUnicode_Check(args[1]) || !PyTuple_Check(args[3]) ||
        !PySet_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "_setup(): bad argument types");
        return NULL;
    }
    double idle_timeout = 0;
    if (args[4] != Py_None) {
        idle_timeout = PyFloat_AsDouble(args[4]);
        if (idle_timeout == -1 && PyErr_Occurred())
            return NULL;
    }
    if (c->configured) {
        PyErr_SetString(PyExc_RuntimeError, "pool already set up");
        return NULL;
    }
    c->orphans = PySet_New(NULL);
    if (c->orphans == NULL)
        return NULL;
    c->configured = 1;
    c->max_workers = (int)max_workers;
    c->prefix = Py_NewRef(args[1]);
    c->initializer = args[2] == Py_None ? NULL : Py_NewRef(args[2]);
    c->initargs = Py_NewRef(args[3]);
    c->idle_timeout = idle_timeout;
    c->threads = Py_NewRef(args[5]);
    Py_RETURN_NONE;
}

static int
pool_check_ready(fe_pool *self)
{
    if (!self->core->configured) {
        PyErr_SetString(PyExc_RuntimeError,
                        "ThreadPoolExecutor.__init__() was not called");
        return -1;
    }
    return 0;
}

static PyObject *
kwargs_from_names(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)
        return NULL;
    PyObject *kw = PyDict_New();
    if (kw == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
        if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            Py_DECREF(kw);
            return NULL;
        }
    }
    return kw;
}

static PyObject *
tuple_from_array(PyObject *const *items, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, Py_NewRef(items[i]));
    return t;
}

/* Fill a job's call from fastcall arguments (fn first).  -1 on error. */
static int
job_set_call(fe_job *job, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    job->fn = Py_NewRef(args[0]);
    job->args = tuple_from_array(args + 1, nargs - 1);
    if (job->args == NULL)
        return -1;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        job->kwargs = kwargs_from_names(args, nargs, kwnames);
        if (job->kwargs == NULL)
            return -1;
    }
    return 0;
}

/* submit(fn, /, *args, **kwargs) -> concurrent.futures.Future */
static PyObject *
pool_submit(fe_pool *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    fe_core *c = self->core;
    fe_state *st = c->st;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "submit() missing 1 required positional argument: 'fn'");
        return NULL;
    }
    if (pool_check_ready(self) < 0)
        return NULL;
    /* Refuse before allocating anything (the check is repeated under the
     * lock in core_enqueue, which is the one that counts). */
    if (c->broken || c->shutdown || fe_interpreter_shutdown(st)) {
        raise_not_accepting(c, c->broken, c->shutdown);
        return NULL;
    }
    fe_job *job = fe_job_new();
    if (job == NULL)
        return NULL;
    job->kind = JOB_CF;
    if (job_set_call(job, args, nargs, kwnames) < 0) {
        fe_job_free(job);
        return NULL;
    }
    job->future = fe_future_new(st);
    if (job->future == NULL) {
        fe_job_free(job);
        return NULL;
    }
    PyObject *fut = Py_NewRef(job->future);
    if (core_enqueue(c, job) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* Queue an asyncio job for `loop`; returns the loop's new future. */
static PyObject *
pool_run_impl(fe_pool *self, PyObject *loop, PyObject *ctx, PyObject *fn,
              PyObject *args, PyObject *kwargs)
{
    fe_core *c = self->core;
    fe_state *st = c->st;
    fe_job *job = NULL;
    if (pool_check_ready(self) < 0)
        goto refused;
    if (c->broken || c->shutdown || fe_interpreter_shutdown(st)) {
        raise_not_accepting(c, c->broken, c->shutdown);
        goto refused;
    }
    job = fe_job_new();
    if (job == NULL)
        goto refused;
    job->kind = JOB_ASYNC;
    job->fn = Py_NewRef(fn);
    job->args = args;                 /* stolen */
    job->kwargs = kwargs;             /* stolen */
    job->ctx = Py_XNewRef(ctx);
    job->loop = Py_NewRef(loop);
    job->future = PyObject_CallMethodNoArgs(loop, st->s_create_future);
    if (job->future == NULL) {
        fe_job_free(job);
        return NULL;
    }
    job->chan = fe_channel_for_loop(st, loop);
    if (job->chan == NULL) {
        fe_job_free(job);
        return NULL;
    }
    PyObject *fut = Py_NewRef(job->future);
    if (core_enqueue(c, job) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;

refused:
    /* args and kwargs were handed to us: release them. */
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    return NULL;
}

/* run(fn, /, *args, **kwargs) -> asyncio.Future of the running loop */
static PyObject *
pool_run(fe_pool *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    fe_state *st = self->core->st;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "run() missing 1 required positional argument: 'fn'");
        return NULL;
    }
    PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
    if (loop == NULL)
        return NULL;
    PyObject *targs = tuple_from_array(args + 1, nargs - 1);
    if (targs == NULL) {
        Py_DECREF(loop);
        return NULL;
    }
    PyObject *kw = NULL;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        kw = kwargs_from_names(args, nargs, kwnames);
        if (kw == NULL) {
            Py_DECREF(targs);
            Py_DECREF(loop);
            return NULL;
        }
    }
    PyObject *fut = pool_run_impl(self, loop, NULL, args[0], targs, kw);
    Py_DECREF(loop);
    return fut;
}

/* _run_on(loop, ctx, fn, args, kwargs): the fast path for a given loop. */
static PyObject *
pool_run_on(fe_pool *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "_run_on() takes 5 arguments");
        return NULL;
    }
    PyObject *ctx = args[1] == Py_None ? NULL : args[1];
    PyObject *targs = args[3];
    PyObject *kw = args[4];
    if (!PyTuple_Check(targs)) {
        PyErr_SetString(PyExc_TypeError, "_run_on(): args must be a tuple");
        return NULL;
    }
    if (kw != Py_None && !PyDict_Check(kw)) {
        PyErr_SetString(PyExc_TypeError, "_run_on(): kwargs must be a dict or None");
        return NULL;
    }
    if (ctx != NULL && !PyContext_CheckExact(ctx)) {
        PyErr_SetString(PyExc_TypeError, "_run_on(): ctx must be a Context or None");
        return NULL;
    }
    Py_INCREF(targs);
    if (kw == Py_None || PyDict_GET_SIZE(kw) == 0)
        kw = NULL;
    else
        kw = PyDict_Copy(kw);
    if (PyErr_Occurred()) {
        Py_DECREF(targs);
        return NULL;
    }
    return pool_run_impl(self, args[0], ctx, args[2], targs, kw);
}

/* map(fn, *iterables, timeout=None, chunksize=1) */
static PyObject *
pool_map(fe_pool *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    fe_core *c = self->core;
    fe_state *st = c->st;
    PyObject *timeout = Py_None;

    /* A subclass that overrides submit() (to count, trace, propagate
     * context...) expects map() to go through it, as the stdlib's does. */
    PyObject *submit = PyObject_GetAttr((PyObject *)Py_TYPE(self), st->s_submit);
    if (submit == NULL)
        return NULL;
    Py_DECREF(submit);
    if (submit != st->submit_descr) {
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        PyObject **full = PyMem_Malloc((nargs + nkw + 1) * sizeof(PyObject *));
        if (full == NULL)
            return PyErr_NoMemory();
        full[0] = (PyObject *)self;
        memcpy(full + 1, args, (nargs + nkw) * sizeof(PyObject *));
        PyObject *res = PyObject_Vectorcall(st->Executor_map, full, nargs + 1, kwnames);
        PyMem_Free(full);
        return res;
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0)
                timeout = args[nargs + i];
            else if (PyUnicode_CompareWithASCIIString(name, "chunksize") == 0)
                ;  /* used by process pools only, as in the stdlib */
            else {
                PyErr_Format(PyExc_TypeError,
                             "map() got an unexpected keyword argument '%U'", name);
                return NULL;
            }
        }
    }
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "map() missing 1 required positional argument: 'fn'");
        return NULL;
    }
    if (pool_check_ready(self) < 0)
        return NULL;
    double deadline = -1;
    if (timeout != Py_None) {
        /* timeout + time.monotonic(), as the stdlib (so the same TypeError) */
        double t = PyFloat_AsDouble(timeout);
        if (t == -1 && PyErr_Occurred())
            return NULL;
        deadline = t + fe_monotonic();
    }
    PyObject *fn = args[0];
    PyObject *zipargs = tuple_from_array(args + 1, nargs - 1);
    if (zipargs == NULL)
        return NULL;
    PyObject *zipped = PyObject_Call((PyObject *)&PyZip_Type, zipargs, NULL);
    Py_DECREF(zipargs);
    if (zipped == NULL)
        return NULL;

    fe_mapbatch *b = batch_new();
    if (b == NULL) {
        Py_DECREF(zipped);
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(zipped)) != NULL) {
        fe_job *job = fe_job_new();
        if (job == NULL || batch_grow(b) < 0) {
            Py_DECREF(item);
            if (job)
                PyMem_Free(job);
            goto error;
        }
        job->kind = JOB_MAP;
        job->fn = Py_NewRef(fn);
        job->args = item;
        job->batch = b;
        batch_incref(b);
        job->index = b->n - 1;
        if (core_enqueue(c, job) < 0) {
            /* The slot will never be filled: nothing waits for it, because
             * the caller gets the error and no iterator. */
            goto error;
        }
    }
    if (PyErr_Occurred())
        goto error;
    Py_DECREF(zipped);

    fe_mapiter *it = PyObject_GC_New(fe_mapiter, st->MapIter_Type);
    if (it == NULL) {
        pthread_mutex_lock(&b->mu);
        b->abandoned = 1;
        pthread_mutex_unlock(&b->mu);
        fe_batch_decref(b);
        return NULL;
    }
    it->st = st;
    it->batch = b;
    it->next = 0;
    it->deadline = deadline;
    it->finished = 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;

error:
    Py_DECREF(zipped);
    fe_batch_decref(b);
    return NULL;
}

static PyObject *
pool_get_core(fe_pool *self, void *Py_UNUSED(closure))
{
    return Py_NewRef((PyObject *)self->core);
}

static int
pool_traverse(fe_pool *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT((PyObject *)self->core);
    return 0;
}

static int
pool_clear(fe_pool *self)
{
    if (self->core != NULL) {
        /* The executor is going away without shutdown(): let its workers
         * finish the queue and leave (the stdlib's weakref callback). */
        core_shutdown_impl(self->core, 0);
        Py_CLEAR(self->core);
    }
    return 0;
}

static void
pool_dealloc(fe_pool *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    pool_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef pool_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))pool_submit,
     METH_FASTCALL | METH_KEYWORDS,
     "submit(fn, /, *args, **kwargs)\n--\n\n"
     "Submit fn(*args, **kwargs) to the pool; returns a "
     "concurrent.futures.Future."},
    {"map", (PyCFunction)(void (*)(void))pool_map,
     METH_FASTCALL | METH_KEYWORDS,
     "map(fn, *iterables, timeout=None, chunksize=1)\n--\n\n"
     "Like map(fn, *iterables), the calls run in the pool.  All calls are "
     "submitted at once; results come in order; a TimeoutError or an "
     "exception from fn cancels the calls that haven't started."},
    {"run", (PyCFunction)(void (*)(void))pool_run,
     METH_FASTCALL | METH_KEYWORDS,
     "run(fn, /, *args, **kwargs)\n--\n\n"
     "Run fn(*args, **kwargs) in the pool; returns an asyncio.Future of the "
     "running event loop (the fast path: no concurrent.futures.Future)."},
    {"_run_on", (PyCFunction)(void (*)(void))pool_run_on, METH_FASTCALL,
     "_run_on(loop, ctx, fn, args, kwargs) (internal)"},
    {"_setup", (PyCFunction)(void (*)(void))pool_setup, METH_FASTCALL,
     "_setup(max_workers, prefix, initializer, initargs, idle_timeout, "
     "threads) (internal)"},
    {NULL, NULL}
};

static PyGetSetDef pool_getset[] = {
    {"_core", (getter)pool_get_core, NULL, "The pool's queue and workers.", NULL},
    {NULL}
};

static PyType_Slot pool_slots[] = {
    {Py_tp_doc, "The C base of fastexec.ThreadPoolExecutor."},
    {Py_tp_new, pool_new},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_clear, pool_clear},
    {Py_tp_methods, pool_methods},
    {Py_tp_getset, pool_getset},
    {0, NULL}
};

static PyType_Spec pool_spec = {
    .name = "fastexec._fastexec.Pool",
    .basicsize = sizeof(fe_pool),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = pool_slots,
};

int
fe_pool_init_types(PyObject *module, fe_state *st)
{
    st->Core_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &core_spec, NULL);
    if (st->Core_Type == NULL)
        return -1;
    st->MapIter_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &mapiter_spec, NULL);
    if (st->MapIter_Type == NULL)
        return -1;
    st->Pool_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &pool_spec, NULL);
    if (st->Pool_Type == NULL)
        return -1;
    if (PyModule_AddType(module, st->Pool_Type) < 0)
        return -1;
    return 0;
}

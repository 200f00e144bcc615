/* fastexec core: the engine (see core.h).  Jobs reach a worker through the
 * queue, and their outcomes leave through their sink (job.h). */
#include "core.h"
#include "fork.h"

#include <errno.h>
#include <stddef.h>
#include <structmember.h>

_Static_assert(sizeof(ssize_t) == sizeof(Py_ssize_t), "Py_SSIZE_T is ssize_t");

static const char BROKEN_MSG[] =
    "A thread initializer failed, the thread pool is not usable anymore";

/* --------------------------------------------------------------- queue */

static inline void
queue_assert(const fe_queue *q)
{
    assert((q->head == NULL) == (q->tail == NULL));
    assert((q->head == NULL) == (q->n == 0));
    assert(q->n >= 0);
    assert(q->tail == NULL || q->tail->next == NULL);
    (void)q;
}

static inline void
queue_push(fe_core *c, fe_job *job)
{
    fe_queue *q = &c->queue;
    FE_ASSERT_HELD(&c->mu);
    queue_assert(q);
    job->next = NULL;
    if (q->tail == NULL)
        q->head = job;
    else
        q->tail->next = job;
    q->tail = job;
    __atomic_store_n(&q->n, q->n + 1, __ATOMIC_RELAXED);
    queue_assert(q);
}

static inline fe_job *
queue_pop(fe_core *c)
{
    fe_queue *q = &c->queue;
    FE_ASSERT_HELD(&c->mu);
    queue_assert(q);
    fe_job *job = q->head;
    if (job != NULL) {
        q->head = job->next;
        if (q->head == NULL)
            q->tail = NULL;
        job->next = NULL;
        __atomic_store_n(&q->n, q->n - 1, __ATOMIC_RELAXED);
    }
    queue_assert(q);
    return job;
}

/* Empty the queue: the one way to take all of it.  Returns its jobs as a
 * list (walk it with fe_job_list_pop); *n is how many, if asked. */
static inline fe_job *
queue_drain(fe_core *c, ssize_t *n)
{
    fe_queue *q = &c->queue;
    FE_ASSERT_HELD(&c->mu);
    queue_assert(q);
    fe_job *list = q->head;
    if (n != NULL)
        *n = q->n;
    q->head = q->tail = NULL;
    __atomic_store_n(&q->n, 0, __ATOMIC_RELAXED);
    return list;
}

/* ---------------------------------------------------------- idle stack */

static inline void
idle_push(fe_core *c, fe_worker *w)
{
    FE_ASSERT_HELD(&c->mu);
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
    FE_ASSERT_HELD(&c->mu);
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
    assert(c->nidle >= 0);
}

/* A worker "heads for the queue" from the moment it starts delivering a
 * job's outcome, or is woken, or finds the queue empty and lets the GIL go
 * to spin or to wait, until it takes a job, goes on the idle stack or
 * exits.  It is sure to look at the queue before waiting, so fe_core_enqueue
 * wakes or starts no worker for a job that a heading worker will take.
 * Delivering an outcome wakes the awaiting loop (call_soon_threadsafe lets
 * the GIL go in its write), which may queue the next job before this worker
 * has looked at the queue again: counting it from there on is what keeps a
 * sequential round trip on one thread, as the stdlib's and anyio's pools do.
 * The flag is only touched by its worker, or under mu while the worker is on
 * the idle stack (wake_one); the counter is atomic (read under mu by
 * fe_core_enqueue, changed by a running worker without it). */
static inline void
worker_heading(fe_core *c, fe_worker *w)
{
    if (!w->heading) {
        w->heading = 1;
        __atomic_fetch_add(&c->nheading, 1, __ATOMIC_SEQ_CST);
    }
}

/* It took a job, waits, or exits.  mu held. */
static inline void
worker_back(fe_core *c, fe_worker *w)
{
    FE_ASSERT_HELD(&c->mu);
    if (w->heading) {
        w->heading = 0;
        __atomic_fetch_sub(&c->nheading, 1, __ATOMIC_SEQ_CST);
    }
}

/* Waking.  With the GIL, one worker holding it runs every queued job back to
 * back (core_next_job); a second worker woken for the same burst only waits
 * for the GIL, takes it from the loop or from the first worker, finds the
 * queue empty and sleeps again: two GIL hand-offs and a few context switches
 * for nothing.  Measured on the four-hop HTTP app (32 connections, loaded
 * 2-core VM, Python 3.13): waking one worker per queued job cost ~9-13
 * worker context switches and ~14-20 worker futex calls per request.
 *
 * So a submit wakes (or starts) no worker while one heads for the queue
 * (however many jobs are queued), nor while one spins.  The heading worker
 * takes the first job and, if more are queued and no other heads for the
 * queue, passes the baton: it wakes the next idle worker, or starts a thread
 * below max_workers (the cascade, core_next_job), so that a job queued
 * behind one that blocks (or that waits for it) still gets a thread of its
 * own, as with the stdlib.  The cascaded worker first gives the waker
 * CASCADE_DELAY to drain the queue itself (it usually does: it holds the
 * GIL and the jobs are short), and only then asks for the GIL. */
#define CASCADE_DELAY 50e-6

/* Starting.  A thread is started for a queued job when no worker is idle,
 * spinning or heading for the queue.  Until it first looks at the queue it
 * counts in nstarting, and no other thread is started for the jobs it will
 * take: start one only while more jobs are queued than threads are starting
 * (core_can_start).  Without that count, a worker that came back meanwhile
 * took the job a thread was being started for, the next submit started yet
 * another, and a pool serving 8 concurrent callers grew to 9 or 10 threads
 * (in half of the runs of 8 clients x 10 sequential 2 ms calls, Python
 * 3.13; the stdlib's pool, whose idle semaphore is released after the
 * outcome, in nearly all).  So a pool never holds more threads than it had
 * jobs in hand or queued when it last started one.  The jobs a starting
 * thread was counted for depend on it: if it leaves without taking one (its
 * condition variable or initializer failed and the pool did not break), it
 * finds or starts a worker for them first (core_replace_starting). */
static inline int
core_can_start(fe_core *c)
{
    FE_ASSERT_HELD(&c->mu);
    assert(c->nstarting >= 0 && c->nstarting <= c->nthreads);
    return c->nthreads < c->max_workers && c->queue.n > c->nstarting;
}

/* The worker's first look at the queue, or its leaving before it: it no
 * longer counts as starting.  mu held. */
static inline void
worker_started(fe_core *c, fe_worker *w)
{
    FE_ASSERT_HELD(&c->mu);
    if (w->starting) {
        w->starting = 0;
        c->nstarting--;
        assert(c->nstarting >= 0);
    }
}

/* Wake the most recently idle worker (LIFO: its cache is warm, and the
 * others stay asleep long enough to reach idle_timeout); `deferred`: woken
 * by a cascade (see "Waking").  mu held. */
static inline int
wake_one(fe_core *c, int deferred)
{
    FE_ASSERT_HELD(&c->mu);
    fe_worker *w = c->idle;
    if (w == NULL)
        return 0;
    idle_remove(c, w);
    w->woken = 1;
    w->deferred = deferred;
    worker_heading(c, w);
    pthread_cond_signal(&w->cv);
    return 1;
}

/* Queued work and no worker idle, spinning or heading for the queue: wake
 * one (`deferred`: by a cascade, see "Waking") or reserve a new thread
 * (counted in nthreads, nspawning and nstarting: the caller starts it with
 * spawn_worker once mu is released).  Returns 1 if a thread was reserved.
 * mu held. */
static int
core_reserve_worker(fe_core *c, int deferred)
{
    FE_ASSERT_HELD(&c->mu);
    if (c->queue.head == NULL || c->spinning ||
        __atomic_load_n(&c->nheading, __ATOMIC_SEQ_CST) > 0 ||
        wake_one(c, deferred) || !core_can_start(c) ||
        c->shutdown || c->broken || fe_interpreter_shutdown(c->st))
        return 0;
    c->nthreads++;
    c->nspawning++;
    c->nstarting++;
    return 1;
}

static void
wake_all_locked(fe_core *c)
{
    while (wake_one(c, 0))
        ;
}

/* mu held. */
static int
core_should_exit(fe_core *c)
{
    FE_ASSERT_HELD(&c->mu);
    return c->queue.head == NULL &&
           (c->shutdown || c->broken || fe_interpreter_shutdown(c->st));
}

/* ------------------------------------------------------ spawn tickets */

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
    fe_mutex_lock(&c->mu);
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
            c->nstarting--;
            assert(c->nstarting >= 0);
        }
    }
    if (--c->nspawning == 0)
        pthread_cond_broadcast(&c->spawn_cv);
    fe_mutex_unlock(&c->mu);
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

void
fe_core_list_current_thread(fe_core *c)
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
    FE_ASSERT_GIL();
    fe_state *st = c->st;
    Py_ssize_t index;
    PyObject *name = NULL, *target = NULL, *kwargs = NULL, *args = NULL;
    PyObject *ticket = NULL, *t = NULL, *r = NULL;
    int ticket_done = 0;
    fe_mutex_lock(&c->mu);
    index = c->next_index++;
    fe_mutex_unlock(&c->mu);

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

/* ------------------------------------------------------------ accepting */

/* Raise the stdlib's error for a pool that takes no work (flags read by the
 * caller). */
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

int
fe_core_check_accepting(fe_core *c)
{
    if (c->broken || c->shutdown || fe_interpreter_shutdown(c->st)) {
        raise_not_accepting(c, c->broken, c->shutdown);
        return -1;
    }
    return 0;
}

int
fe_core_enqueue(fe_core *c, fe_job *job)
{
    FE_ASSERT_GIL();
    /* Only a job with a call and a sink that runs it enters a queue (not a
     * relayed outcome: bridge.c). */
    assert(job->fn != NULL && job->sink->wanted != NULL &&
           job->sink->deliver != NULL && job->sink->cancel != NULL &&
           job->sink->fail != NULL && job->sink->fork_child != NULL);
    int spawn = 0;
    fe_mutex_lock(&c->mu);
    int broken = c->broken, shutdown = c->shutdown;
    if (broken || shutdown || fe_interpreter_shutdown(c->st)) {
        fe_mutex_unlock(&c->mu);
        fe_job_free(job);
        raise_not_accepting(c, broken, shutdown);
        return -1;
    }
    if (c->queue.head == NULL)
        fe_spin_job_arrives(&c->spin);
    queue_push(c, job);
    /* A spinning worker, or one heading for the queue, takes the first
     * queued job without being woken, and passes the baton if more are
     * queued (see "Waking" and worker_heading). */
    spawn = core_reserve_worker(c, 0);
    fe_mutex_unlock(&c->mu);
    if (spawn && spawn_worker(c) < 0) {
        /* As the stdlib: the job stays queued for the other workers, the
         * error reaches the caller. */
        return -1;
    }
    return 0;
}

/* A thread counted in nstarting leaves without having taken a job (its
 * condition variable or its initializer failed, the pool not broken): the
 * jobs it was counted for may have no other thread coming (no thread was
 * started for them: core_can_start), so find or start one now.  GIL held,
 * mu not held. */
static void
core_replace_starting(fe_core *c)
{
    FE_ASSERT_GIL();
    fe_mutex_lock(&c->mu);
    int spawn = core_reserve_worker(c, 0);
    fe_mutex_unlock(&c->mu);
    if (spawn && spawn_worker(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
}

/* --------------------------------------------------------- worker loop */

/* Run one job and hand its outcome to its sink.  GIL held.  Returns how to
 * count it: FE_RESULT, FE_ERROR or FE_CANCELLED (skipped). */
static fe_outcome
core_run_job(fe_core *c, fe_worker *w, fe_job *job)
{
    FE_ASSERT_GIL();
    fe_state *st = c->st;
    const fe_sink *sink = job->sink;
    if (!sink->wanted(st, job)) {
        w->current = NULL;  /* before any finalizer can run */
        fe_job_free(job);
        return FE_CANCELLED;
    }
    PyObject *value = fe_job_call(job);
    /* Heading for the queue from here (so a submit made as soon as the
     * outcome is seen wakes nobody: this worker takes it), unless deliver
     * runs callbacks: one that submits to this pool and waits for the
     * result would wait forever for this very worker. */
    if (!sink->runs_callbacks)
        worker_heading(c, w);
    fe_outcome outcome = FE_RESULT;
    if (value == NULL) {
        value = fe_fetch_exception();
        outcome = FE_ERROR;
    }
    sink->deliver(st, job, outcome, value);
    if (sink->runs_callbacks)
        worker_heading(c, w);
    w->current = NULL;  /* before any finalizer can run */
    if (sink->hand_off != NULL)
        sink->hand_off(st, job);
    else
        fe_job_free(job);
    return outcome;
}

/* Take the next job, waiting for one without the GIL.  Counts the previous
 * job's outcome under the same lock.  Returns NULL when the worker must exit
 * (*idle_exit tells whether for idle_timeout); nthreads was lowered then. */
static fe_job *
core_next_job(fe_core *c, fe_worker *w, fe_outcome prev, int *idle_exit)
{
    FE_ASSERT_GIL();
    fe_job *job;
    *idle_exit = 0;

    fe_mutex_lock(&c->mu);
    worker_started(c, w);
    if (prev != FE_PENDING) {
        c->nrunning--;
        w->busy = 0;
        if (prev == FE_CANCELLED)
            c->cancelled++;
        else {
            c->completed++;
            if (prev == FE_ERROR)
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
            worker_back(c, w);
            w->current = job;
            w->busy = 1;
            c->nrunning++;
            /* More queued and no other worker heading for the queue: pass
             * the baton (see "Waking"); start a thread if none is idle. */
            int spawn = core_reserve_worker(c, 1);
            fe_mutex_unlock(&c->mu);
            if (spawn && spawn_worker(c) < 0)
                PyErr_WriteUnraisable((PyObject *)c);
            return job;
        }
        if (core_should_exit(c)) {
            worker_back(c, w);
            c->nthreads--;
            fe_mutex_unlock(&c->mu);
            return NULL;
        }
        /* Heading for the queue until it looks at it again below. */
        worker_heading(c, w);
        fe_spin_queue_empty(&c->spin);
        int spin = !c->spinning && fe_spin_wanted(&c->spin);
        int leave = 0, caught = 0;
        double gil_asked = 0;
        if (spin)
            c->spinning = 1;
        fe_mutex_unlock(&c->mu);

        /* Wait for work without the GIL; take it (above) once we hold the
         * GIL again: if another worker took it meanwhile, wait again. */
        Py_BEGIN_ALLOW_THREADS
        if (spin && fe_spin_wait(&c->spin, &c->queue.n)) {
            caught = 1;
            fe_spin_gil_lag_wait(&c->spin);
        }
        fe_mutex_lock(&c->mu);
        if (spin) {
            /* Under the lock that submit takes, so that a submit that saw
             * `spinning` (and woke nobody) is sure to be seen here. */
            c->spinning = 0;
        }
        for (;;) {
            if (c->queue.head != NULL) {
                if (!w->deferred)
                    break;
                /* Woken by a cascade: let the waker drain the queue first;
                 * still heading for it meanwhile, so no one else is woken. */
                w->deferred = 0;
                struct timespec until = fe_deadline(CASCADE_DELAY);
                (void)fe_mutex_timedwait(&w->cv, &c->mu, &until);
                if (c->queue.head != NULL)
                    break;
            }
            worker_back(c, w);
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
                    rc = fe_mutex_timedwait(&w->cv, &c->mu, &deadline);
                } while (!w->woken && rc == 0);
            }
            else {
                do {
                    rc = fe_mutex_wait(&w->cv, &c->mu);
                } while (!w->woken && rc == 0);
            }
            if (!w->woken) {
                /* Timed out (still on the stack: take ourselves off it). */
                idle_remove(c, w);
                if (c->queue.head == NULL) {
                    c->nthreads--;
                    *idle_exit = 1;
                    leave = 1;
                    break;
                }
            }
        }
        fe_mutex_unlock(&c->mu);
        if (caught)
            gil_asked = fe_monotonic();
        Py_END_ALLOW_THREADS
        if (caught)
            fe_spin_gil_learn(&c->spin, fe_monotonic() - gil_asked);
        if (leave)
            return NULL;
        fe_mutex_lock(&c->mu);
    }
}

/* The initializer failed: break the pool, fail what is queued (as the
 * stdlib's _initializer_failed). GIL held, exception `exc` in hand. */
static void
core_initializer_failed(fe_core *c, PyObject *exc)
{
    FE_ASSERT_GIL();
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
    fe_mutex_lock(&c->mu);
    if (c->broken_msg == NULL) {
        c->broken_msg = msg;
        msg = NULL;
    }
    c->broken = 1;
    fe_job *list = queue_drain(c, NULL);
    wake_all_locked(c);
    fe_mutex_unlock(&c->mu);
    Py_XDECREF(msg);

    PyObject *err = PyObject_CallOneArg(st->BrokenThreadPool, c->broken_msg);
    if (err == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        fe_job_list_free(list);     /* still free the jobs */
        return;
    }
    fe_job *job;
    while ((job = fe_job_list_pop(&list)) != NULL)
        job->sink->fail(st, job, err);
    Py_DECREF(err);
}

/* core._worker(ticket): the body of every worker thread. */
static PyObject *
core_worker(fe_core *c, PyObject *ticket)
{
    fe_state *st = c->st;
    fe_worker w;
    int idle_exit = 0, self_listed = 0;
    fe_outcome done = FE_PENDING;

    if (!PyByteArray_Check(ticket) || PyByteArray_GET_SIZE(ticket) != 1) {
        PyErr_SetString(PyExc_TypeError, "_worker() takes a spawn ticket");
        return NULL;
    }
    if (fe_cond_init(&w.cv) < 0) {
        /* No worker after all: nthreads was raised for us. */
        fe_mutex_lock(&c->mu);
        if (ticket_byte(ticket)[0] != TICKET_ABANDONED) {
            c->nthreads--;
            c->nstarting--;
            assert(c->nstarting >= 0);
        }
        ticket_byte(ticket)[0] = TICKET_ABANDONED;
        fe_mutex_unlock(&c->mu);
        core_replace_starting(c);
        PyErr_SetString(PyExc_OSError, "pthread_cond_init failed");
        return NULL;
    }
    w.prev = w.next = NULL;
    w.current = NULL;
    w.busy = 0;
    w.woken = 0;
    w.heading = 0;
    w.deferred = 0;
    w.starting = 0;
    w.tid = pthread_self();
    /* On the list of all workers from the start (the initializer included),
     * so that a fork() from inside this thread knows it survives. */
    fe_mutex_lock(&c->mu);
    if (ticket_byte(ticket)[0] == TICKET_ABANDONED) {
        /* Our spawner's start() failed and gave our count back, yet here
         * we are.  If another thread took our place, leave; else count
         * ourselves, and list ourselves below. */
        if (c->nthreads >= c->max_workers) {
            fe_mutex_unlock(&c->mu);
            pthread_cond_destroy(&w.cv);
            Py_RETURN_NONE;
        }
        c->nthreads++;
        self_listed = 1;
    }
    else {
        /* Counted in nstarting by our spawner (core_can_start). */
        w.starting = 1;
    }
    ticket_byte(ticket)[0] = TICKET_STARTED;
    w.all_prev = NULL;
    w.all_next = c->all;
    if (c->all != NULL)
        c->all->all_prev = &w;
    c->all = &w;
    fe_mutex_unlock(&c->mu);
    if (self_listed)
        fe_core_list_current_thread(c);

    if (c->initializer != NULL) {
        PyObject *r = PyObject_Call(c->initializer, c->initargs, NULL);
        if (r == NULL) {
            PyObject *exc = fe_fetch_exception();
            core_initializer_failed(c, exc);
            Py_DECREF(exc);
            fe_mutex_lock(&c->mu);
            worker_started(c, &w);
            c->nthreads--;
            fe_mutex_unlock(&c->mu);
            core_replace_starting(c);   /* nothing if the pool broke */
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
    fe_mutex_lock(&c->mu);
    if (w.all_prev != NULL)
        w.all_prev->all_next = w.all_next;
    else
        c->all = w.all_next;
    if (w.all_next != NULL)
        w.all_next->all_prev = w.all_prev;
    fe_mutex_unlock(&c->mu);
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

/* ------------------------------------------------------------ shutdown */

/* core.wait_spawning(): wait, without the GIL, until no thread is being
 * started, so that every thread that will run accepted work is listed in
 * _threads (shutdown(wait=True) then joins them all, as the stdlib's, whose
 * submit starts threads under the executor's shutdown lock). */
static PyObject *
core_wait_spawning(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    Py_BEGIN_ALLOW_THREADS
    fe_mutex_lock(&c->mu);
    while (c->nspawning > 0)
        fe_mutex_wait(&c->spawn_cv, &c->mu);
    fe_mutex_unlock(&c->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

void
fe_core_shutdown(fe_core *c, int cancel_futures)
{
    FE_ASSERT_GIL();
    fe_job *list = NULL;
    fe_mutex_lock(&c->mu);
    c->shutdown = 1;
    if (cancel_futures) {
        ssize_t n;
        list = queue_drain(c, &n);
        c->cancelled += n;
    }
    wake_all_locked(c);
    fe_mutex_unlock(&c->mu);
    fe_job *job;
    while ((job = fe_job_list_pop(&list)) != NULL)
        job->sink->cancel(c->st, job);
}

/* core.shutdown(cancel_futures): stop taking work; wake the idle workers so
 * they leave once the queue is empty. Doesn't wait (the caller joins). */
static PyObject *
core_shutdown(fe_core *c, PyObject *arg)
{
    int cancel = PyObject_IsTrue(arg);
    if (cancel < 0)
        return NULL;
    fe_core_shutdown(c, cancel);
    Py_RETURN_NONE;
}

static PyObject *
core_wake_all(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    fe_mutex_lock(&c->mu);
    wake_all_locked(c);
    fe_mutex_unlock(&c->mu);
    Py_RETURN_NONE;
}

static PyObject *
core_thread_list(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    if (c->threads == NULL)
        return PyList_New(0);
    return PySequence_List(c->threads);
}

/* --------------------------------------------------------------- stats */

static PyObject *
core_stats(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    fe_mutex_lock(&c->mu);
    int max_workers = c->max_workers, threads = c->nthreads;
    int idle = c->nidle + c->spinning;
    int running = c->nrunning;
    Py_ssize_t queued = c->queue.n;
    unsigned long long completed = c->completed, failed = c->failed;
    unsigned long long cancelled = c->cancelled;
    fe_mutex_unlock(&c->mu);
    return Py_BuildValue("{sisisisnsisKsKsK}",
                         "max_workers", max_workers, "threads", threads,
                         "idle", idle, "queued", queued, "running", running,
                         "completed", completed, "failed", failed,
                         "cancelled", cancelled);
}

static PyObject *
core_after_fork_child(fe_core *c, PyObject *Py_UNUSED(ignored))
{
    fe_fork_after_child(c);
    Py_RETURN_NONE;
}

static PyObject *
core_get_is_shutdown(fe_core *c, void *Py_UNUSED(closure))
{
    fe_mutex_lock(&c->mu);
    int s = c->shutdown;
    fe_mutex_unlock(&c->mu);
    return PyBool_FromLong(s);
}

static PyObject *
core_get_broken(fe_core *c, void *Py_UNUSED(closure))
{
    fe_mutex_lock(&c->mu);
    PyObject *msg = c->broken ? Py_XNewRef(c->broken_msg) : NULL;
    fe_mutex_unlock(&c->mu);
    if (msg == NULL)
        Py_RETURN_NONE;
    return msg;
}

/* ------------------------------------------------------ the _Core type */

int
fe_core_setup(fe_core *c, long max_workers, PyObject *prefix,
              PyObject *initializer, PyObject *initargs,
              double idle_timeout, PyObject *threads)
{
    if (c->configured) {
        PyErr_SetString(PyExc_RuntimeError, "pool already set up");
        return -1;
    }
    c->orphans = PySet_New(NULL);
    if (c->orphans == NULL)
        return -1;
    c->configured = 1;
    c->max_workers = (int)max_workers;
    c->prefix = Py_NewRef(prefix);
    c->initializer = Py_XNewRef(initializer);
    c->initargs = Py_NewRef(initargs);
    c->idle_timeout = idle_timeout;
    c->threads = Py_NewRef(threads);
    return 0;
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
    fe_mutex_lock(&c->mu);
    for (fe_job *j = c->queue.head; j != NULL && rc == 0; j = j->next)
        rc = fe_job_traverse(j, visit, arg);
    fe_mutex_unlock(&c->mu);
    return rc;
}

static int
core_clear(fe_core *c)
{
    /* Only reached when no worker can see the core (workers hold it). */
    fe_mutex_lock(&c->mu);
    fe_job *list = queue_drain(c, NULL);
    c->shutdown = 1;
    fe_mutex_unlock(&c->mu);
    fe_job_list_free(list);
    list = c->fork_queued;
    c->fork_queued = NULL;
    fe_job_list_free(list);
    list = c->fork_running;
    c->fork_running = NULL;
    fe_job_list_free(list);
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
    fe_fork_unregister(c);
    if (c->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)c);
    core_clear(c);
    Py_CLEAR(c->module);
    pthread_cond_destroy(&c->spawn_cv);
    fe_mutex_destroy(&c->mu);
    tp->tp_free((PyObject *)c);
    Py_DECREF(tp);
}

fe_core *
fe_core_new(fe_state *st, PyObject *module)
{
    fe_core *c = PyObject_GC_New(fe_core, st->Core_Type);
    if (c == NULL)
        return NULL;
    memset((char *)c + sizeof(PyObject), 0, sizeof(fe_core) - sizeof(PyObject));
    c->st = st;
    c->module = Py_NewRef(module);
    if (fe_mutex_init(&c->mu) < 0) {
        Py_DECREF(c->module);
        PyObject_GC_Del(c);
        PyErr_SetString(PyExc_OSError, "pthread_mutex_init failed");
        return NULL;
    }
    if (fe_cond_init(&c->spawn_cv) < 0) {
        fe_mutex_destroy(&c->mu);
        Py_DECREF(c->module);
        PyObject_GC_Del(c);
        PyErr_SetString(PyExc_OSError, "pthread_cond_init failed");
        return NULL;
    }
    c->max_workers = 1;
    fe_spin_init(&c->spin);
    if (fe_fork_register(c) < 0) {
        pthread_cond_destroy(&c->spawn_cv);
        fe_mutex_destroy(&c->mu);
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
     "_worker($self, ticket, /)\n--\n\n"
     "Run as a worker thread until the pool is shut down (internal)."},
    {"wait_spawning", (PyCFunction)core_wait_spawning, METH_NOARGS,
     "wait_spawning($self, /)\n--\n\n"
     "Wait until no worker thread is being started (internal)."},
    {"shutdown", (PyCFunction)core_shutdown, METH_O,
     "shutdown($self, cancel_futures, /)\n--\n\n"
     "Stop taking work, wake idle workers."},
    {"wake_all", (PyCFunction)core_wake_all, METH_NOARGS,
     "wake_all($self, /)\n--\n\n"
     "Wake every idle worker (internal)."},
    {"thread_list", (PyCFunction)core_thread_list, METH_NOARGS,
     "thread_list($self, /)\n--\n\n"
     "The executor's worker threads, as a list (internal)."},
    {"stats", (PyCFunction)core_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "A snapshot of the pool's counters, as a dict."},
    {"_after_fork_child", (PyCFunction)core_after_fork_child, METH_NOARGS,
     "_after_fork_child($self, /)\n--\n\n"
     "In a child process after fork, end the work inherited from the "
     "parent (internal)."},
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

int
fe_core_init_type(PyObject *module, fe_state *st)
{
    st->Core_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &core_spec, NULL);
    return st->Core_Type == NULL ? -1 : 0;
}

/* fastexec mapiter: map()'s batch, its sink and its iterator (mapiter.h). */
#include "mapiter.h"

/* The shared state of one map() call: its results, filled in by workers and
 * taken in order by the iterator.  Refcounted by the iterator and the jobs
 * (under `mu`); freed with the GIL. */
struct fe_mapbatch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Py_ssize_t refcnt;
    Py_ssize_t n;                 /* items submitted */
    Py_ssize_t cap;
    PyObject **values;            /* owned results/exceptions, by index */
    unsigned char *status;        /* an fe_outcome per item */
    Py_ssize_t waiting_for;       /* index the iterator sleeps on, or -1 */
    int abandoned;                /* iterator gone or failed: skip the rest */
};

/* -------------------------------------------------------------- batch */

fe_mapbatch *
fe_batch_new(void)
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
    FE_ASSERT_GIL();
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
        b->status[b->n] = FE_PENDING;
        b->n++;
    }
    pthread_mutex_unlock(&b->mu);
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

/* Settle item i (steals `value`); wakes the iterator if it waits for i. */
static void
batch_settle(fe_mapbatch *b, Py_ssize_t i, fe_outcome outcome, PyObject *value)
{
    pthread_mutex_lock(&b->mu);
    assert(b->status[i] == FE_PENDING);
    assert(outcome != FE_PENDING);
    b->status[i] = (unsigned char)outcome;
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

static void
batch_abandon(fe_mapbatch *b)
{
    pthread_mutex_lock(&b->mu);
    b->abandoned = 1;
    pthread_mutex_unlock(&b->mu);
}

/* --------------------------------------------------------------- sink */

static int
map_wanted(fe_state *st, fe_job *job)
{
    return !batch_abandoned(job->batch);
}

static void
map_deliver(fe_state *st, fe_job *job, fe_outcome outcome, PyObject *value)
{
    batch_settle(job->batch, job->index, outcome, value);
}

static void
map_cancel(fe_state *st, fe_job *job)
{
    Py_INCREF(st->CancelledError);  /* placeholder value, never raised as is */
    batch_settle(job->batch, job->index, FE_CANCELLED, st->CancelledError);
    fe_job_free(job);
}

static void
map_fail(fe_state *st, fe_job *job, PyObject *exc)
{
    batch_settle(job->batch, job->index, FE_ERROR, Py_NewRef(exc));
    fe_job_free(job);
}

static void
map_fork_child(fe_state *st, fe_job *job, int running, PyObject **err)
{
    /* Never lock a map batch after fork (fork.c): leave its memory. */
    job->batch = NULL;
    fe_job_free(job);
}

static void
map_release(fe_job *job)
{
    if (job->batch != NULL) {
        fe_batch_decref(job->batch);
        job->batch = NULL;
    }
}

static const fe_sink map_sink = {
    .name = "map",
    .wanted = map_wanted,
    .deliver = map_deliver,
    .hand_off = NULL,             /* freed once delivered */
    .cancel = map_cancel,
    .fail = map_fail,
    .fork_child = map_fork_child,
    .release = map_release,
};

fe_job *
fe_batch_job(fe_mapbatch *b, PyObject *fn, PyObject *args)
{
    fe_job *job = fe_job_new(&map_sink);
    if (job == NULL || batch_grow(b) < 0) {
        Py_DECREF(args);
        if (job != NULL)
            fe_job_free(job);
        return NULL;
    }
    job->fn = Py_NewRef(fn);
    job->args = args;
    job->batch = b;
    batch_incref(b);
    job->index = b->n - 1;
    return job;
}

/* ----------------------------------------------------------- iterator */

typedef struct {
    PyObject_HEAD
    fe_state *st;
    fe_mapbatch *batch;
    Py_ssize_t next;              /* the index to yield next */
    double deadline;              /* monotonic; < 0 for no timeout */
    int finished;
} fe_mapiter;

static void
mapiter_abandon(fe_mapiter *it)
{
    if (it->batch == NULL || it->finished)
        return;
    it->finished = 1;
    batch_abandon(it->batch);
}

/* Stop the calls that haven't started.  As the stdlib's map generator, only
 * once iteration has begun: an iterator dropped or closed before its first
 * next() cancels nothing (its generator's finally never ran). */
static void
mapiter_drop(fe_mapiter *it)
{
    if (it->next > 0)
        mapiter_abandon(it);
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
        if (b->status[i] == FE_PENDING && slice > 0) {
            struct timespec ts = fe_deadline(slice);
            b->waiting_for = i;
            while (b->status[i] == FE_PENDING && rc == 0)
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
        if (status != FE_PENDING)
            return status;
        if (it->deadline >= 0 && fe_monotonic() >= it->deadline) {
            *timed_out = 1;
            return FE_PENDING;
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
    if (status == FE_RESULT)
        return value;
    mapiter_abandon(it);
    if (status == FE_CANCELLED) {
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
     "close($self, /)\n--\n\n"
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

PyObject *
fe_mapiter_new(fe_state *st, fe_mapbatch *b, double deadline)
{
    fe_mapiter *it = PyObject_GC_New(fe_mapiter, st->MapIter_Type);
    if (it == NULL) {
        batch_abandon(b);
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
}

int
fe_mapiter_init_type(PyObject *module, fe_state *st)
{
    st->MapIter_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &mapiter_spec, NULL);
    return st->MapIter_Type == NULL ? -1 : 0;
}

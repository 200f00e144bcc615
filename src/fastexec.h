/* fastexec: shared declarations of the C thread pool and the asyncio bridge.
 *
 * Locking rules (they are what keeps the pool free of deadlocks):
 *   1. A thread may take a pool or channel mutex while it holds the GIL.
 *   2. A thread never waits for the GIL while it holds one of our mutexes.
 *      (So a worker waiting for work holds its mutex inside pthread_cond_wait
 *      only, with the GIL released, and re-acquires the GIL after unlocking.)
 *   3. Our mutexes are leaves: no code holds two of them at once.
 * Python objects are touched only with the GIL (an attached thread state).
 */
#ifndef FASTEXEC_H
#define FASTEXEC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#if PY_VERSION_HEX < 0x03090000
#error "fastexec needs Python 3.9 or newer"
#endif

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
static inline PyObject *Py_XNewRef(PyObject *o) { Py_XINCREF(o); return o; }
#endif

typedef struct {
    PyTypeObject *Pool_Type;      /* _fastexec.Pool: the executor base class */
    PyTypeObject *Core_Type;      /* _fastexec._Core: queue and workers */
    PyTypeObject *MapIter_Type;   /* the iterator map() returns */
    PyTypeObject *Channel_Type;   /* per-loop outbox of finished jobs */
    PyTypeObject *Wakeup_Type;    /* the callback one batch costs the loop */
    PyTypeObject *Relay_Type;     /* wrap_future's done-callback */
    PyTypeObject *Future_Type;    /* our concurrent.futures.Future subclass */

    PyObject *cf_Future;          /* concurrent.futures.Future */
    PyObject *CancelledError;     /* concurrent.futures.CancelledError */
    PyObject *TimeoutError;       /* concurrent.futures.TimeoutError */
    PyObject *BrokenThreadPool;   /* concurrent.futures.thread.BrokenThreadPool */
    PyObject *logger;             /* concurrent.futures._base.LOGGER */
    PyObject *Thread;             /* threading.Thread */
    PyObject *current_thread;     /* threading.current_thread */
    PyObject *get_running_loop;   /* asyncio.get_running_loop */
    PyObject *convert_future_exc; /* asyncio.futures._convert_future_exc */
    PyObject *Condition;          /* threading.Condition */
    PyObject *state_names[5];     /* concurrent.futures._base.PENDING, ... */
    PyObject *base_result, *base_exception, *base_set_running;
    PyObject *base_set_result, *base_set_exception, *base_add_done_callback;
    PyObject *Executor_map;       /* concurrent.futures.Executor.map */
    PyObject *submit_descr;       /* Pool.submit, to spot an override */
    PyObject *channels;           /* dict: weakref(loop) -> weakref(Channel),
                                     for loops that take no attribute */
    PyObject *channels_pop;       /* channels.pop: the weakrefs' callback */

    /* Interned method and keyword names. */
    PyObject *s_set_result, *s_set_exception, *s_set_running_or_notify_cancel;
    PyObject *s_cancel, *s_cancelled, *s_done, *s_create_future;
    PyObject *s_call_soon_threadsafe, *s_add_done_callback, *s_exception;
    PyObject *s_result, *s_start, *s_add, *s_discard, *s_critical;
    PyObject *s_submit, *s_name, *s_target, *s_exc_info, *s_worker, *s_is_closed;
    PyObject *s_args, *s_loop_channel;
    PyObject *empty_tuple;

    /* Set once by fastexec's threading atexit hook: no new work after it. */
    int interpreter_shutdown;
} fe_state;

/* What a job is for; where its outcome goes. */
enum { JOB_CF = 0, JOB_ASYNC = 1, JOB_MAP = 2 };
/* A finished job's outcome, as it travels to the loop. */
enum { OUT_NONE = 0, OUT_RESULT = 1, OUT_EXCEPTION = 2, OUT_CANCEL = 3 };

struct fe_channel;
struct fe_mapbatch;

/* A job: a call to run, where to deliver it, and once run, its outcome.
 * Plain C memory (PyMem_Malloc), allocated and freed with the GIL held. Every
 * PyObject* is owned (or NULL).  A job is in exactly one place at a time: a
 * pool queue, a worker's hands, or a channel's outbox. */
typedef struct fe_job {
    struct fe_job *next;
    unsigned char kind;
    unsigned char outcome;
    PyObject *fn;                 /* the callable (NULL for a relayed outcome) */
    PyObject *args;               /* tuple */
    PyObject *kwargs;             /* dict or NULL */
    PyObject *ctx;                /* contextvars.Context to run in, or NULL */
    PyObject *future;             /* CF: concurrent future; ASYNC: asyncio future */
    PyObject *loop;               /* ASYNC: the future's loop */
    struct fe_channel *chan;      /* ASYNC: the loop's outbox */
    struct fe_mapbatch *batch;    /* MAP: the batch, index below */
    Py_ssize_t index;
    PyObject *value;              /* outcome: the result or the exception */
} fe_job;

fe_job *fe_job_new(void);
void fe_job_free(fe_job *job);
int fe_job_traverse(fe_job *job, visitproc visit, void *arg);

/* Module (_fastexec.c).  The module state of one of our types, found from
 * `tp`, which may be a Python subclass of it (TypeError `what` if none). */
fe_state *fe_state_of_type(PyTypeObject *tp, const char *what);

/* Bridge (bridge.c). */
int fe_bridge_init_types(PyObject *module, fe_state *st);
/* The outbox of `loop`, created on first use; a new reference. */
struct fe_channel *fe_channel_for_loop(fe_state *st, PyObject *loop);
/* Hand a finished ASYNC job to its loop (takes ownership of `job`). */
void fe_channel_post(fe_state *st, fe_job *job);
PyObject *fe_wrap_future(fe_state *st, PyObject *cf_future, PyObject *loop);

/* Future (future.c). */
int fe_future_init_type(PyObject *module, fe_state *st);
PyObject *fe_future_new(fe_state *st);
int fe_future_check(fe_state *st, PyObject *o);
int fe_future_lock_free(PyObject *self);
int fe_future_set_running(PyObject *self);        /* 1, 0 (cancelled), -1 */
int fe_future_set_result(PyObject *self, PyObject *value);
int fe_future_set_exception(PyObject *self, PyObject *exc);

/* Pool (pool.c). */
int fe_pool_init_types(PyObject *module, fe_state *st);
/* Every set-up core of this module on the fork registry: a new list. */
PyObject *fe_live_cores(fe_state *st);

/* A per-object critical section where free-threaded builds need one (a no-op
 * with the GIL, and before 3.13). */
#if PY_VERSION_HEX >= 0x030D0000
#define FE_BEGIN_CRITICAL_SECTION(o) Py_BEGIN_CRITICAL_SECTION(o)
#define FE_END_CRITICAL_SECTION() Py_END_CRITICAL_SECTION()
#else
#define FE_BEGIN_CRITICAL_SECTION(o) {
#define FE_END_CRITICAL_SECTION() }
#endif

/* An exception from the error indicator, with its traceback attached. */
static inline PyObject *
fe_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (t == NULL)
        return NULL;
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(v, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(t);
    return v;
#endif
}

/* Raise `exc` (a borrowed exception instance) as the current exception. */
static inline void
fe_raise(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(Py_NewRef(exc));
#else
    PyObject *tb = PyException_GetTraceback(exc);
    Py_INCREF(Py_TYPE(exc));
    Py_INCREF(exc);
    PyErr_Restore((PyObject *)Py_TYPE(exc), exc, tb);
#endif
}

static inline int
fe_interpreter_shutdown(fe_state *st)
{
    return __atomic_load_n(&st->interpreter_shutdown, __ATOMIC_ACQUIRE);
}

/* Absolute CLOCK_MONOTONIC deadline `seconds` from now. */
static inline struct timespec
fe_deadline(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (seconds > 1e9)
        seconds = 1e9;
    double whole = (double)(time_t)seconds;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static inline double
fe_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A condition variable that measures time on CLOCK_MONOTONIC. */
static inline int
fe_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}


#endif /* FASTEXEC_H */

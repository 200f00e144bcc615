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

#include "compat.h"
#include "state.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

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

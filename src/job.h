/* fastexec job: a call to run, and the sink its outcome goes to.
 *
 * A job is plain C memory (PyMem_Calloc), allocated and freed with the GIL
 * held.  Every PyObject* is owned (or NULL).  A job is in exactly one place
 * at a time: a pool queue, a worker's hands, or a channel's outbox.
 *
 * The engine (core.c) never knows where an outcome goes: it calls the job's
 * sink, a table of operations that each destination provides (future.c: the
 * concurrent Future of submit(); mapiter.c: a map() batch; bridge.c: an
 * asyncio future through its loop's channel, and wrap_future's relay).
 */
#ifndef FASTEXEC_JOB_H
#define FASTEXEC_JOB_H

#include "fastexec.h"

/* A job's outcome: how it is counted, and what travels to its destination. */
typedef enum {
    FE_PENDING = 0,     /* not settled yet */
    FE_RESULT = 1,      /* returned a value */
    FE_ERROR = 2,       /* raised an exception */
    FE_CANCELLED = 3,   /* cancelled, skipped, or never run */
} fe_outcome;

typedef struct fe_job fe_job;
struct fe_mapbatch;

/* Where a job's outcome goes.  Every operation runs with the GIL held.
 * Those that "take" the job own it from then on (free it or pass it on). */
typedef struct fe_sink {
    const char *name;
    /* Run-or-skip, in the worker about to run it: 0 if the destination no
     * longer wants it (cancelled, abandoned), else 1.  Reports its own
     * errors (unraisable) and then answers 0. */
    int (*wanted)(fe_state *st, fe_job *job);
    /* Deliver the outcome (FE_RESULT or FE_ERROR; steals `value`).  The
     * job is still in the worker's hands: it is not taken. */
    void (*deliver)(fe_state *st, fe_job *job, fe_outcome outcome,
                    PyObject *value);
    /* The worker let go of a delivered job: pass it on (takes it).  NULL:
     * the engine frees it. */
    void (*hand_off)(fe_state *st, fe_job *job);
    /* Cancel a job that never ran (shutdown(cancel_futures=True)); takes
     * it. */
    void (*cancel)(fe_state *st, fe_job *job);
    /* Fail a job that never ran with `exc` (borrowed); takes it. */
    void (*fail)(fe_state *st, fe_job *job, PyObject *exc);
    /* In a child process after fork: settle the child's copy of a job the
     * parent had queued (running == 0) or in a worker's hands (1), where
     * that is safe, else drop it untouched; takes it.  `*err` is a shared,
     * lazily made RuntimeError for the running ones (owned by the caller). */
    void (*fork_child)(fe_state *st, fe_job *job, int running, PyObject **err);
    /* Release what the job holds of its destination beyond its PyObject
     * fields (fe_job_free calls it); NULL if nothing. */
    void (*release)(fe_job *job);
    /* 1 if deliver can run user code (a concurrent future's done
     * callbacks): code that may submit to this pool and wait for the
     * result.  The worker then counts as heading for the queue only once
     * deliver has returned, so such a submit wakes or starts another worker
     * (see core_run_job). */
    int runs_callbacks;
} fe_sink;

struct fe_job {
    fe_job *next;
    const fe_sink *sink;
    fe_outcome outcome;           /* once run: FE_RESULT, FE_ERROR, ... */
    PyObject *fn;                 /* the callable (NULL: nothing to run) */
    PyObject *args;               /* tuple */
    PyObject *kwargs;             /* dict or NULL */
    PyObject *ctx;                /* contextvars.Context to run in, or NULL */
    PyObject *future;             /* the concurrent or the asyncio future */
    PyObject *loop;               /* asyncio: the future's loop */
    PyObject *chan;               /* asyncio: the loop's channel */
    struct fe_mapbatch *batch;    /* map: the batch, index below */
    Py_ssize_t index;
    PyObject *value;              /* the outcome: result or exception */
};

/* A new zeroed job for `sink` (NULL with MemoryError). */
fe_job *fe_job_new(const fe_sink *sink);
/* Free a job and all it holds (its sink's release included). */
void fe_job_free(fe_job *job);
int fe_job_traverse(fe_job *job, visitproc visit, void *arg);
/* Call the job's function in its context: a new reference, or NULL with an
 * exception set. */
PyObject *fe_job_call(fe_job *job);

/* The one way to walk a list of jobs linked by `next`: take its first job
 * (unlinked), or NULL when it is empty.  Use as
 *     while ((job = fe_job_list_pop(&list)) != NULL) ... */
static inline fe_job *
fe_job_list_pop(fe_job **list)
{
    fe_job *job = *list;
    if (job != NULL) {
        *list = job->next;
        job->next = NULL;
    }
    return job;
}

/* Free every job of a list. */
static inline void
fe_job_list_free(fe_job *list)
{
    fe_job *job;
    while ((job = fe_job_list_pop(&list)) != NULL)
        fe_job_free(job);
}

#endif /* FASTEXEC_JOB_H */

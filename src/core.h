/* fastexec core: the engine of a pool.  The queue, the idle stack, spawn
 * tickets, the worker loop, shutdown and stats; the `_Core` type, which is
 * what worker threads reference (never the executor: an executor dropped
 * without shutdown() is collected, and tells its core to let the workers
 * finish the queue and leave, as the stdlib's weakref callback does).
 *
 * The engine runs jobs and hands their outcomes to each job's sink (job.h);
 * it never knows where they go.
 */
#ifndef FASTEXEC_CORE_H
#define FASTEXEC_CORE_H

#include "job.h"
#include "spin.h"

/* The FIFO of jobs waiting for a worker: an intrusive list (pushing can't
 * fail, and needs no allocation under the lock).  Guarded by core->mu.
 * Invariants: head, tail and n are all empty or all not; tail->next == NULL. */
typedef struct {
    fe_job *head, *tail;
    ssize_t n;                    /* read without the lock by spinners */
} fe_queue;

/* A worker waiting for work: an entry of the core's idle stack.  Lives on the
 * worker's C stack for the worker's whole life.  Guarded by core->mu. */
typedef struct fe_worker {
    pthread_cond_t cv;
    pthread_t tid;                /* to tell, after fork, which one forked */
    struct fe_worker *prev, *next;        /* on the idle stack */
    struct fe_worker *all_prev, *all_next;  /* on the list of all workers */
    fe_job *current;              /* the job in its hands, or NULL: read by
                                     the child after fork (fork.c) */
    int busy;                     /* counted in nrunning: from taking a job
                                     to counting its outcome */
    int woken;                    /* set by the thread that popped it */
    int heading;                  /* counted in core->nheading (core.c) */
    int deferred;                 /* woken by a cascade: gives the waker
                                     CASCADE_DELAY to drain the queue first */
    int starting;                 /* counted in core->nstarting */
} fe_worker;

typedef struct fe_core {
    PyObject_HEAD
    fe_state *st;
    PyObject *module;             /* keeps `st` alive */

    fe_mutex mu;                  /* guards everything below up to stats */
    fe_queue queue;
    fe_worker *idle;              /* LIFO stack of waiting workers */
    fe_worker *all;               /* every running worker */
    int nidle;
    int nthreads;                 /* workers started and not yet exiting */
    int nspawning;                /* threads being started (spawn_worker) */
    pthread_cond_t spawn_cv;      /* signalled when nspawning drops to 0 */
    int nstarting;                /* threads started for queued jobs that
                                     have not looked at the queue yet
                                     (core.c, "Starting") */
    int nrunning;                 /* jobs in a worker's hands */
    int max_workers;
    int spinning;                 /* a worker is spinning for the next job */
    int nheading;                 /* workers that will look at the queue
                                     before they wait (atomic; core.c,
                                     worker_heading) */
    fe_spin spin;                 /* spin.h */
    int shutdown;                 /* no new work; workers leave when queue empty */
    int broken;                   /* an initializer failed */
    Py_ssize_t next_index;        /* suffix of the next thread's name */
    unsigned long long completed, failed, cancelled;

    /* Set once by fe_core_setup, read-only after (so read without mu). */
    double idle_timeout;          /* seconds; <= 0 means never */
    PyObject *initializer;        /* or NULL */
    PyObject *initargs;           /* tuple */
    PyObject *prefix;             /* str: thread name prefix */
    PyObject *threads;            /* the executor's _threads set */
    PyObject *orphans;            /* set: workers gone before being listed */
    PyObject *broken_msg;         /* str once broken */
    int configured;
    PyObject *weakreflist;

    /* Fork (fork.c): every core is on a process-wide registry; what the
     * child inherited waits here for core._after_fork_child(). */
    struct fe_core *fork_next, *fork_prev;
    fe_job *fork_queued, *fork_running;
    int fork_survivor;            /* the forking thread is one of our workers */
} fe_core;

int fe_core_init_type(PyObject *module, fe_state *st);
/* A new core of `module` (a new reference), on the fork registry. */
fe_core *fe_core_new(fe_state *st, PyObject *module);
/* Configure a new core once (Pool._setup); -1 with an exception. */
int fe_core_setup(fe_core *c, long max_workers, PyObject *prefix,
                  PyObject *initializer, PyObject *initargs,
                  double idle_timeout, PyObject *threads);
/* Raise the stdlib's error if the core takes no work (-1), else 0.  A quick
 * check without the lock: fe_core_enqueue checks again, and that counts. */
int fe_core_check_accepting(fe_core *c);
/* Queue a job and see that a worker will run it.  Takes the job: on error
 * (refused, or no thread could be started) -1 with an exception. */
int fe_core_enqueue(fe_core *c, fe_job *job);
/* Stop taking work; cancel the queue if asked; wake the idle workers. */
void fe_core_shutdown(fe_core *c, int cancel_futures);
/* List the calling thread in the executor's _threads (reported, not
 * raised, on failure). */
void fe_core_list_current_thread(fe_core *c);

#endif /* FASTEXEC_CORE_H */

/* fastexec fork: the registry of live cores and what fork() does to them.
 *
 * fork() must not copy a queue in the middle of a change, so every core's
 * mutex is held across it.  That is done by pthread_atfork handlers, inside
 * fork() itself, and not by a Python before-fork hook: between Python hooks
 * the GIL can pass to a worker, which could then block on the mutex while
 * holding the GIL that the forking thread needs (a deadlock CPython's own
 * test_hang_global_shutdown_lock found).  Inside fork() the forking thread
 * holds the GIL and runs no Python code, so whoever holds a core's mutex then
 * is a thread without the GIL, which releases it without waiting for
 * anything.  (This is the one place that holds more than one of our mutexes:
 * rule 3 of fastexec.h.)
 *
 * In the child the workers are gone, but their memory was copied: their
 * fe_worker records (on their stacks) still say which job each had in hand.
 * The child handler, plain C, resets the core and keeps the inherited work
 * aside; core._after_fork_child() (fastexec's Python after-fork hook) then
 * hands each job to its sink's fork_child: the work is the parent's, the
 * parent runs it, the child never does.  Where it can be done without
 * touching anything but the future (a concurrent future with no Condition,
 * waiter or callback), the child's copy is settled: a queued call cancelled,
 * a running one failed with RuntimeError.  Anything else is dropped
 * untouched, as the stdlib leaves it: its locks (a future's Condition, a map
 * batch's mutex) may be held by threads that are gone, and its callbacks
 * belong to the parent.
 */
#include "fork.h"
#include "core.h"

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static fe_core *registry = NULL;
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void
fork_prepare(void)
{
    pthread_mutex_lock(&registry_mu);
    for (fe_core *c = registry; c != NULL; c = c->fork_next)
        fe_mutex_lock(&c->mu);
}

static void
fork_parent(void)
{
    for (fe_core *c = registry; c != NULL; c = c->fork_next)
        fe_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&registry_mu);
}

static void
fork_child(void)
{
    for (fe_core *c = registry; c != NULL; c = c->fork_next) {
        /* Queued jobs, then the ones workers had in hand. */
        if (c->queue.head != NULL) {
            c->queue.tail->next = c->fork_queued;
            c->fork_queued = c->queue.head;
        }
        c->queue.head = c->queue.tail = NULL;
        c->queue.n = 0;
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
        c->nheading = 0;
        c->nstarting = 0;
        if (survivor != NULL)
            survivor->heading = survivor->starting = 0;
        c->nthreads = survivor != NULL;
        c->nrunning = survivor != NULL && survivor->busy;
        /* Threads that were being started are gone; so are the waiters of
         * spawn_cv, whose state is theirs: start it afresh. */
        c->nspawning = 0;
        (void)fe_cond_init(&c->spawn_cv);
        /* This thread locked it in fork_prepare: it owns it here too. */
        fe_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&registry_mu);
}

static void
install_handlers(void)
{
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int
fe_fork_register(fe_core *c)
{
    if (pthread_once(&handlers_once, install_handlers) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_once failed");
        return -1;
    }
    pthread_mutex_lock(&registry_mu);
    c->fork_prev = NULL;
    c->fork_next = registry;
    if (registry != NULL)
        registry->fork_prev = c;
    registry = c;
    pthread_mutex_unlock(&registry_mu);
    return 0;
}

void
fe_fork_unregister(fe_core *c)
{
    pthread_mutex_lock(&registry_mu);
    if (c->fork_prev != NULL)
        c->fork_prev->fork_next = c->fork_next;
    else if (registry == c)
        registry = c->fork_next;
    if (c->fork_next != NULL)
        c->fork_next->fork_prev = c->fork_prev;
    c->fork_next = c->fork_prev = NULL;
    pthread_mutex_unlock(&registry_mu);
}

/* GIL held; a core being deallocated (its count already 0) is skipped.  Only
 * C runs under the registry mutex: a Python allocation could collect
 * garbage, and a core freed then would take the mutex again. */
PyObject *
fe_fork_live_cores(fe_state *st)
{
    FE_ASSERT_GIL();
    Py_ssize_t n = 0, cap = 0;
    PyObject **found = NULL;
    pthread_mutex_lock(&registry_mu);
    for (fe_core *c = registry; c != NULL; c = c->fork_next)
        cap++;
    found = cap ? PyMem_RawMalloc(cap * sizeof(PyObject *)) : NULL;
    for (fe_core *c = registry; c != NULL && found != NULL; c = c->fork_next) {
        if (c->st == st && c->configured && fe_try_incref((PyObject *)c))
            found[n++] = (PyObject *)c;
    }
    pthread_mutex_unlock(&registry_mu);
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

void
fe_fork_after_child(fe_core *c)
{
    FE_ASSERT_GIL();
    fe_mutex_lock(&c->mu);
    fe_job *queued = c->fork_queued, *running = c->fork_running;
    c->fork_queued = c->fork_running = NULL;
    int survivor = c->fork_survivor;
    c->fork_survivor = 0;
    fe_mutex_unlock(&c->mu);
    if (c->threads != NULL) {
        PySet_Clear(c->threads);
        if (survivor)
            fe_core_list_current_thread(c);   /* this worker called fork() */
    }

    PyObject *err = NULL;
    fe_job *job;
    while ((job = fe_job_list_pop(&queued)) != NULL)
        job->sink->fork_child(c->st, job, 0, &err);
    while ((job = fe_job_list_pop(&running)) != NULL)
        job->sink->fork_child(c->st, job, 1, &err);
    Py_XDECREF(err);
}

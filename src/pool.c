/* fastexec pool: the Pool type, the executor users hold (the C base of
 * fastexec.ThreadPoolExecutor).  Its methods build jobs, each with the sink
 * of its destination, and queue them on the pool's core (core.h):
 * submit() -> a concurrent Future (future.h), map() -> a batch and its
 * iterator (mapiter.h), run() / _run_on() -> an asyncio future (bridge.h).
 */
#include "pool.h"
#include "bridge.h"
#include "core.h"
#include "future.h"
#include "mapiter.h"

typedef struct {
    PyObject_HEAD
    fe_core *core;                /* never NULL after tp_new */
} fe_pool;

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
    self->core = fe_core_new(fe_state_of_module(module), module);
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
    if (fe_core_setup(c, max_workers, args[1],
                      args[2] == Py_None ? NULL : args[2], args[3],
                      idle_timeout, args[5]) < 0)
        return NULL;
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
    if (fe_core_check_accepting(c) < 0)
        return NULL;
    fe_job *job = fe_job_new(&fe_future_sink);
    if (job == NULL)
        return NULL;
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
    if (fe_core_enqueue(c, job) < 0) {
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
    if (fe_core_check_accepting(c) < 0)
        goto refused;
    job = fe_job_new(&fe_async_sink);
    if (job == NULL)
        goto refused;
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
    if (fe_core_enqueue(c, job) < 0) {
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

/* map(fn, *iterables, timeout=None, chunksize=1, buffersize=None) */
static PyObject *
pool_map(fe_pool *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    fe_core *c = self->core;
    fe_state *st = c->st;
    PyObject *timeout = Py_None;
    PyObject *buffersize = NULL;

    /* A subclass that overrides submit() (to count, trace, propagate
     * context...) expects map() to go through it, as the stdlib's does. */
    PyObject *submit = PyObject_GetAttr((PyObject *)Py_TYPE(self), st->s_submit);
    if (submit == NULL)
        return NULL;
    Py_DECREF(submit);
    /* map(..., buffersize=N) (3.14's, offered on every version): at most N
     * calls ahead of the consumer, through submit(), by the Python side
     * (_map_buffered, the stdlib's algorithm); buffersize=None is the
     * eager map below, unless submit is overridden (then _map_buffered
     * calls it, where the stdlib's map before 3.14 knows no buffersize). */
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i),
                                                 "buffersize") == 0)
                buffersize = args[nargs + i];
        }
    }
    if (buffersize != NULL && (buffersize != Py_None || submit != st->submit_descr)) {
        PyObject *meth = PyObject_GetAttrString((PyObject *)self, "_map_buffered");
        if (meth == NULL)
            return NULL;
        PyObject *res = PyObject_Vectorcall(meth, args, nargs, kwnames);
        Py_DECREF(meth);
        return res;
    }
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
            else if (PyUnicode_CompareWithASCIIString(name, "buffersize") == 0)
                ;  /* None here (above) */
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

    fe_mapbatch *b = fe_batch_new();
    if (b == NULL) {
        Py_DECREF(zipped);
        return NULL;
    }
    PyObject *item;
    while ((item = PyIter_Next(zipped)) != NULL) {
        fe_job *job = fe_batch_job(b, fn, item);
        if (job == NULL)
            goto error;
        if (fe_core_enqueue(c, job) < 0) {
            /* The slot will never be filled: nothing waits for it, because
             * the caller gets the error and no iterator. */
            goto error;
        }
    }
    if (PyErr_Occurred())
        goto error;
    Py_DECREF(zipped);
    return fe_mapiter_new(st, b, deadline);

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
        fe_core_shutdown(self->core, 0);
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
     "submit($self, fn, /, *args, **kwargs)\n--\n\n"
     "Submit fn(*args, **kwargs) to the pool; returns a "
     "concurrent.futures.Future."},
    {"map", (PyCFunction)(void (*)(void))pool_map,
     METH_FASTCALL | METH_KEYWORDS,
     "map($self, fn, *iterables, timeout=None, chunksize=1, buffersize=None)\n--\n\n"
     "Like map(fn, *iterables), the calls run in the pool.  All calls are "
     "submitted at once (with buffersize=N: at most N ahead of the consumer, "
     "as in 3.14); results come in order; a TimeoutError or an "
     "exception from fn cancels the calls that haven't started."},
    {"run", (PyCFunction)(void (*)(void))pool_run,
     METH_FASTCALL | METH_KEYWORDS,
     "run($self, fn, /, *args, **kwargs)\n--\n\n"
     "Run fn(*args, **kwargs) in the pool; returns an asyncio.Future of the "
     "running event loop (the fast path: no concurrent.futures.Future)."},
    {"_run_on", (PyCFunction)(void (*)(void))pool_run_on, METH_FASTCALL,
     "_run_on($self, loop, ctx, fn, args, kwargs, /)\n--\n\n"
     "Run fn(*args, **kwargs) in ctx, for `loop` (internal)."},
    {"_setup", (PyCFunction)(void (*)(void))pool_setup, METH_FASTCALL,
     "_setup($self, max_workers, prefix, initializer, initargs, "
     "idle_timeout, threads, /)\n--\n\n"
     "Configure the pool, once (internal: ThreadPoolExecutor.__init__)."},
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
fe_pool_init_type(PyObject *module, fe_state *st)
{
    st->Pool_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &pool_spec, NULL);
    if (st->Pool_Type == NULL)
        return -1;
    return PyModule_AddType(module, st->Pool_Type);
}

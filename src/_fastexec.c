/* fastexec._fastexec: module definition, module state and init.
 *
 * The pool is in pool.c, the asyncio bridge in bridge.c; fastexec.h has the
 * shared declarations and the locking rules.
 */
#include "fastexec.h"

static inline fe_state *
get_state(PyObject *module)
{
    void *st = PyModule_GetState(module);
    assert(st != NULL);
    return (fe_state *)st;
}

fe_state *
fe_state_of_type(PyTypeObject *tp, const char *what)
{
    /* Walk up from a Python subclass to the first heap type that has a
     * module: one of ours. */
    while (tp != NULL) {
        if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *m = PyType_GetModule(tp);
            if (m != NULL)
                return PyModule_GetState(m);
            PyErr_Clear();
        }
        tp = tp->tp_base;
    }
    PyErr_SetString(PyExc_TypeError, what);
    return NULL;
}

static PyObject *
set_interpreter_shutdown(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    __atomic_store_n(&get_state(module)->interpreter_shutdown, 1, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *
wrap_future(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wrap_future() takes 2 arguments");
        return NULL;
    }
    return fe_wrap_future(get_state(module), args[0], args[1]);
}

static PyObject *
live_pools(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return fe_live_cores(get_state(module));
}

static PyMethodDef module_methods[] = {
    {"_live_pools", live_pools, METH_NOARGS,
     "_live_pools($module, /)\n--\n\n"
     "The core of every live, set-up pool (the C fork registry; internal)."},
    {"_set_interpreter_shutdown", set_interpreter_shutdown, METH_NOARGS,
     "Refuse new work in every pool: the interpreter is exiting (internal)."},
    {"wrap_future", (PyCFunction)(void (*)(void))wrap_future, METH_FASTCALL,
     "wrap_future(cf_future, loop) -> asyncio.Future\n\n"
     "The outcome of a concurrent.futures.Future, delivered to `loop` through "
     "fastexec's coalesced path (the checks are in fastexec.wrap_future)."},
    {NULL, NULL}
};

static PyObject *
import_attr(const char *modname, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(modname);
    if (mod == NULL)
        return NULL;
    PyObject *v = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return v;
}

#define INTERN(field, text)                                         \
    do {                                                            \
        st->field = PyUnicode_InternFromString(text);               \
        if (st->field == NULL)                                      \
            return -1;                                              \
    } while (0)

#define IMPORT(field, mod, attr)                                    \
    do {                                                            \
        st->field = import_attr(mod, attr);                         \
        if (st->field == NULL)                                      \
            return -1;                                              \
    } while (0)

static int
module_exec(PyObject *module)
{
    fe_state *st = get_state(module);

    INTERN(s_set_result, "set_result");
    INTERN(s_set_exception, "set_exception");
    INTERN(s_set_running_or_notify_cancel, "set_running_or_notify_cancel");
    INTERN(s_cancel, "cancel");
    INTERN(s_cancelled, "cancelled");
    INTERN(s_done, "done");
    INTERN(s_create_future, "create_future");
    INTERN(s_call_soon_threadsafe, "call_soon_threadsafe");
    INTERN(s_add_done_callback, "add_done_callback");
    INTERN(s_exception, "exception");
    INTERN(s_result, "result");
    INTERN(s_start, "start");
    INTERN(s_add, "add");
    INTERN(s_discard, "discard");
    INTERN(s_critical, "critical");
    INTERN(s_submit, "submit");
    INTERN(s_name, "name");
    INTERN(s_target, "target");
    INTERN(s_exc_info, "exc_info");
    INTERN(s_worker, "_worker");
    INTERN(s_is_closed, "is_closed");
    INTERN(s_args, "args");
    INTERN(s_loop_channel, "_fastexec_channel");
    st->empty_tuple = PyTuple_New(0);
    if (st->empty_tuple == NULL)
        return -1;

    IMPORT(cf_Future, "concurrent.futures", "Future");
    IMPORT(CancelledError, "concurrent.futures", "CancelledError");
    IMPORT(TimeoutError, "concurrent.futures", "TimeoutError");
    IMPORT(BrokenThreadPool, "concurrent.futures.thread", "BrokenThreadPool");
    IMPORT(logger, "concurrent.futures._base", "LOGGER");
    IMPORT(Thread, "threading", "Thread");
    IMPORT(current_thread, "threading", "current_thread");
    IMPORT(Condition, "threading", "Condition");
    IMPORT(get_running_loop, "asyncio", "get_running_loop");
    IMPORT(convert_future_exc, "asyncio.futures", "_convert_future_exc");
    IMPORT(Executor_map, "concurrent.futures", "Executor");
    Py_SETREF(st->Executor_map, PyObject_GetAttrString(st->Executor_map, "map"));
    if (st->Executor_map == NULL)
        return -1;

    st->channels = PyDict_New();
    if (st->channels == NULL)
        return -1;
    st->channels_pop = PyObject_GetAttrString(st->channels, "pop");
    if (st->channels_pop == NULL)
        return -1;
    st->interpreter_shutdown = 0;

    if (fe_pool_init_types(module, st) < 0)
        return -1;
    st->submit_descr = PyObject_GetAttr((PyObject *)st->Pool_Type, st->s_submit);
    if (st->submit_descr == NULL)
        return -1;
    if (fe_bridge_init_types(module, st) < 0)
        return -1;
    if (fe_future_init_type(module, st) < 0)
        return -1;
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    fe_state *st = get_state(module);
    Py_VISIT(st->Pool_Type);
    Py_VISIT(st->Core_Type);
    Py_VISIT(st->MapIter_Type);
    Py_VISIT(st->Channel_Type);
    Py_VISIT(st->Wakeup_Type);
    Py_VISIT(st->Relay_Type);
    Py_VISIT(st->cf_Future);
    Py_VISIT(st->CancelledError);
    Py_VISIT(st->TimeoutError);
    Py_VISIT(st->BrokenThreadPool);
    Py_VISIT(st->logger);
    Py_VISIT(st->Thread);
    Py_VISIT(st->current_thread);
    Py_VISIT(st->get_running_loop);
    Py_VISIT(st->convert_future_exc);
    Py_VISIT(st->Future_Type);
    Py_VISIT(st->Condition);
    Py_VISIT(st->base_result);
    Py_VISIT(st->base_exception);
    Py_VISIT(st->base_set_running);
    Py_VISIT(st->base_set_result);
    Py_VISIT(st->base_set_exception);
    Py_VISIT(st->base_add_done_callback);
    for (int i = 0; i < 5; i++)
        Py_VISIT(st->state_names[i]);
    Py_VISIT(st->Executor_map);
    Py_VISIT(st->submit_descr);
    Py_VISIT(st->channels);
    Py_VISIT(st->channels_pop);
    return 0;
}

static int
module_clear(PyObject *module)
{
    fe_state *st = get_state(module);
    Py_CLEAR(st->Pool_Type);
    Py_CLEAR(st->Core_Type);
    Py_CLEAR(st->MapIter_Type);
    Py_CLEAR(st->Channel_Type);
    Py_CLEAR(st->Wakeup_Type);
    Py_CLEAR(st->Relay_Type);
    Py_CLEAR(st->cf_Future);
    Py_CLEAR(st->CancelledError);
    Py_CLEAR(st->TimeoutError);
    Py_CLEAR(st->BrokenThreadPool);
    Py_CLEAR(st->logger);
    Py_CLEAR(st->Thread);
    Py_CLEAR(st->current_thread);
    Py_CLEAR(st->get_running_loop);
    Py_CLEAR(st->convert_future_exc);
    Py_CLEAR(st->Future_Type);
    Py_CLEAR(st->Condition);
    Py_CLEAR(st->base_result);
    Py_CLEAR(st->base_exception);
    Py_CLEAR(st->base_set_running);
    Py_CLEAR(st->base_set_result);
    Py_CLEAR(st->base_set_exception);
    Py_CLEAR(st->base_add_done_callback);
    for (int i = 0; i < 5; i++)
        Py_CLEAR(st->state_names[i]);
    Py_CLEAR(st->Executor_map);
    Py_CLEAR(st->submit_descr);
    Py_CLEAR(st->channels);
    Py_CLEAR(st->channels_pop);
    Py_CLEAR(st->s_set_result);
    Py_CLEAR(st->s_set_exception);
    Py_CLEAR(st->s_set_running_or_notify_cancel);
    Py_CLEAR(st->s_cancel);
    Py_CLEAR(st->s_cancelled);
    Py_CLEAR(st->s_done);
    Py_CLEAR(st->s_create_future);
    Py_CLEAR(st->s_call_soon_threadsafe);
    Py_CLEAR(st->s_add_done_callback);
    Py_CLEAR(st->s_exception);
    Py_CLEAR(st->s_result);
    Py_CLEAR(st->s_start);
    Py_CLEAR(st->s_add);
    Py_CLEAR(st->s_discard);
    Py_CLEAR(st->s_critical);
    Py_CLEAR(st->s_submit);
    Py_CLEAR(st->s_name);
    Py_CLEAR(st->s_target);
    Py_CLEAR(st->s_exc_info);
    Py_CLEAR(st->s_worker);
    Py_CLEAR(st->s_is_closed);
    Py_CLEAR(st->s_args);
    Py_CLEAR(st->s_loop_channel);
    Py_CLEAR(st->empty_tuple);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* Workers are threading.Threads of the interpreter that imported us, and
     * the pool's state is per module object: fine in subinterpreters that
     * share the GIL.  A per-interpreter GIL is refused at import, cleanly. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* The pool's data is guarded by its own mutexes, not by the GIL. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastexec._fastexec",
    .m_doc = "The C thread pool and asyncio bridge of fastexec.",
    .m_size = sizeof(fe_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__fastexec(void)
{
    return PyModuleDef_Init(&module_def);
}

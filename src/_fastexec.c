/* fastexec._fastexec: module definition, module state and init.
 *
 * fastexec.h maps the files and states the locking rules; state.h lists the
 * module state.
 */
#include "fastexec.h"
#include "bridge.h"
#include "core.h"
#include "fork.h"
#include "future.h"
#include "mapiter.h"
#include "pool.h"

#include <string.h>

#define get_state fe_state_of_module

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
    return fe_fork_live_cores(get_state(module));
}

static PyMethodDef module_methods[] = {
    {"_live_pools", live_pools, METH_NOARGS,
     "_live_pools($module, /)\n--\n\n"
     "The core of every live, set-up pool (the C fork registry; internal)."},
    {"_set_interpreter_shutdown", set_interpreter_shutdown, METH_NOARGS,
     "_set_interpreter_shutdown($module, /)\n--\n\n"
     "Refuse new work in every pool: the interpreter is exiting (internal)."},
    {"wrap_future", (PyCFunction)(void (*)(void))wrap_future, METH_FASTCALL,
     "wrap_future($module, cf_future, loop, /)\n--\n\n"
     "The outcome of a concurrent.futures.Future, delivered to `loop` through "
     "fastexec's coalesced path (the checks are in fastexec.wrap_future)."},
    {NULL, NULL}
};

/* getattr(import(modname), attr), attr a dotted path: a new reference. */
static PyObject *
import_attr(const char *modname, const char *attr)
{
    PyObject *v = PyImport_ImportModule(modname);
    while (v != NULL && *attr != '\0') {
        const char *dot = strchr(attr, '.');
        size_t len = dot != NULL ? (size_t)(dot - attr) : strlen(attr);
        PyObject *name = PyUnicode_FromStringAndSize(attr, (Py_ssize_t)len);
        if (name == NULL) {
            Py_DECREF(v);
            return NULL;
        }
        Py_SETREF(v, PyObject_GetAttr(v, name));
        Py_DECREF(name);
        attr += len + (dot != NULL);
    }
    return v;
}

static int
module_exec(PyObject *module)
{
    fe_state *st = get_state(module);

#define EXEC_NAME(field, text)                                      \
    if ((st->field = PyUnicode_InternFromString(text)) == NULL)     \
        return -1;
#define EXEC_IMPORT(field, mod, attr)                               \
    if ((st->field = import_attr(mod, attr)) == NULL)               \
        return -1;
#define EXEC_SET(field)
#define EXEC_TYPE(field)
    FE_STATE_LIST(EXEC_TYPE, EXEC_NAME, EXEC_IMPORT, EXEC_SET)
#undef EXEC_NAME
#undef EXEC_IMPORT
#undef EXEC_SET
#undef EXEC_TYPE

    /* The SET fields. */
    st->empty_tuple = PyTuple_New(0);
    if (st->empty_tuple == NULL)
        return -1;
    st->channels = PyDict_New();
    if (st->channels == NULL)
        return -1;
    st->channels_pop = PyObject_GetAttrString(st->channels, "pop");
    if (st->channels_pop == NULL)
        return -1;
    st->interpreter_shutdown = 0;

    if (fe_core_init_type(module, st) < 0)
        return -1;
    if (fe_mapiter_init_type(module, st) < 0)
        return -1;
    if (fe_pool_init_type(module, st) < 0)
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
#define VISIT_NAME(field, text) Py_VISIT(st->field);
#define VISIT_IMPORT(field, mod, attr) Py_VISIT(st->field);
#define VISIT_SET(field) Py_VISIT(st->field);
#define VISIT_TYPE(field) Py_VISIT(st->field);
    FE_STATE_LIST(VISIT_TYPE, VISIT_NAME, VISIT_IMPORT, VISIT_SET)
#undef VISIT_NAME
#undef VISIT_IMPORT
#undef VISIT_SET
#undef VISIT_TYPE
    return 0;
}

static int
module_clear(PyObject *module)
{
    fe_state *st = get_state(module);
#define CLEAR_NAME(field, text) Py_CLEAR(st->field);
#define CLEAR_IMPORT(field, mod, attr) Py_CLEAR(st->field);
#define CLEAR_SET(field) Py_CLEAR(st->field);
#define CLEAR_TYPE(field) Py_CLEAR(st->field);
    FE_STATE_LIST(CLEAR_TYPE, CLEAR_NAME, CLEAR_IMPORT, CLEAR_SET)
#undef CLEAR_NAME
#undef CLEAR_IMPORT
#undef CLEAR_SET
#undef CLEAR_TYPE
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    FE_SLOT_INTERPRETERS    /* compat.h: 3.12+ */
    FE_SLOT_GIL             /* compat.h: 3.13+ */
    {0, NULL}
};

PyModuleDef fe_module_def = {
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
    return PyModuleDef_Init(&fe_module_def);
}

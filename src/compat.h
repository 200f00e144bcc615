/* fastexec compat: every shim between CPython versions (3.9 .. 3.15, with
 * or without the GIL), in one place.  The rest of src/ calls these and has
 * no PY_VERSION_HEX test of its own.
 */
#ifndef FASTEXEC_COMPAT_H
#define FASTEXEC_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x03090000
#error "fastexec needs Python 3.9 or newer"
#endif

/* Py_NewRef, Py_XNewRef: 3.10. */
#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
static inline PyObject *Py_XNewRef(PyObject *o) { Py_XINCREF(o); return o; }
#endif

/* The module of the first class in tp's MRO defined by `def` (borrowed), or
 * NULL with TypeError: PyType_GetModuleByDef is 3.11. */
#if PY_VERSION_HEX >= 0x030B0000
#define fe_type_module_by_def(tp, def) PyType_GetModuleByDef((tp), (def))
#else
static inline PyObject *
fe_type_module_by_def(PyTypeObject *tp, PyModuleDef *def)
{
    PyObject *mro = tp->tp_mro;
    Py_ssize_t n = mro != NULL ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE))
            continue;
        PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
        if (m != NULL && PyModule_GetDef(m) == def)
            return m;
    }
    PyErr_Format(PyExc_TypeError,
                 "fe_type_module_by_def: no superclass of '%s' has the "
                 "given module", tp->tp_name);
    return NULL;
}
#endif

/* 1 in a free-threaded build (no GIL), else 0: for plain `if`s, so that
 * both branches are compiled everywhere. */
#ifdef Py_GIL_DISABLED
#define FE_FREE_THREADED 1
#else
#define FE_FREE_THREADED 0
#endif

/* A per-object critical section where free-threaded builds need one (a no-op
 * with the GIL, and before 3.13). */
#if PY_VERSION_HEX >= 0x030D0000
#define FE_BEGIN_CRITICAL_SECTION(o) Py_BEGIN_CRITICAL_SECTION(o)
#define FE_END_CRITICAL_SECTION() Py_END_CRITICAL_SECTION()
#else
#define FE_BEGIN_CRITICAL_SECTION(o) {
#define FE_END_CRITICAL_SECTION() }
#endif

/* A new reference to `o` unless it is already being deallocated (its count
 * reached 0): 1 if taken, else 0.  With the GIL, a count read under the GIL
 * can't drop meanwhile.  Free-threaded 3.14+ has the API for it (the object
 * must have had fe_enable_try_incref at creation); 3.13t has none, and there
 * the read is racy against a concurrent last decref. */
#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030E0000
#define fe_enable_try_incref(o) PyUnstable_EnableTryIncRef(o)
#define fe_try_incref(o) PyUnstable_TryIncRef(o)
#else
#define fe_enable_try_incref(o) ((void)(o))
static inline int
fe_try_incref(PyObject *o)
{
    if (Py_REFCNT(o) <= 0)
        return 0;
    Py_INCREF(o);
    return 1;
}
#endif

/* An exception from the error indicator, with its traceback attached
 * (PyErr_GetRaisedException: 3.12). */
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

/* The live object a weakref points to (a new reference), or NULL (dead, or
 * not a weakref: no error is left set).  PyWeakref_GetRef: 3.13. */
static inline PyObject *
fe_weakref_target(PyObject *ref)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj;      /* NULL on error or once dead */
    if (PyWeakref_GetRef(ref, &obj) < 0)
        PyErr_Clear();
    return obj;
#else
    PyObject *obj = PyWeakref_GetObject(ref);
    if (obj == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return obj == Py_None ? NULL : Py_NewRef(obj);
#endif
}

/* The module slots that exist only in newer versions. */
#if PY_VERSION_HEX >= 0x030C0000
/* Workers are threading.Threads of the interpreter that imported us, and the
 * pool's state is per module object: fine in subinterpreters that share the
 * GIL.  A per-interpreter GIL is refused at import, cleanly. */
#define FE_SLOT_INTERPRETERS \
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#else
#define FE_SLOT_INTERPRETERS
#endif
#if PY_VERSION_HEX >= 0x030D0000
/* The pool's data is guarded by its own mutexes, but some of the rest still
 * reasons from the GIL (the README's "What still reasons from the GIL"): so
 * a free-threaded CPython re-enables the GIL when it imports us, and says so
 * (RuntimeWarning), until those places are made safe. */
#define FE_SLOT_GIL {Py_mod_gil, Py_MOD_GIL_USED},
#else
#define FE_SLOT_GIL
#endif

/* Lock rule checks (see fastexec.h).  PyGILState_Check says whether this
 * thread holds the GIL (is attached, free-threaded); it is only asserted in
 * builds with assertions. */
#define FE_ASSERT_GIL() assert(PyGILState_Check())

#endif /* FASTEXEC_COMPAT_H */

/* fastexec state: the module state, as one list.
 *
 * FE_STATE_LIST names every object the module state owns, once; the struct,
 * module_exec's imports and interning, traverse and clear are all generated
 * from it (see _fastexec.c), so they can't drift apart.  Four kinds:
 *   TYPE(field)                     one of our heap types, made by its init
 *   NAME(field, "text")             an interned str
 *   IMPORT(field, "module", "attr") an attribute (dotted path) of a module
 *   SET(field)                      set by module_exec or a type's init
 * Code reaches the state of one of our objects from its type (which may be a
 * Python subclass) with fe_state_by_type, or from the module object with
 * fe_state_of_module.
 */
#ifndef FASTEXEC_STATE_H
#define FASTEXEC_STATE_H

#include "compat.h"

#define FE_STATE_LIST(TYPE, NAME, IMPORT, SET)                                  \
    /* Our types. */                                                         \
    TYPE(Pool_Type)           /* _fastexec.Pool: the executor base class */  \
    TYPE(Core_Type)           /* _fastexec._Core: queue and workers */       \
    TYPE(MapIter_Type)        /* the iterator map() returns */               \
    TYPE(Channel_Type)        /* per-loop outbox of finished jobs */         \
    TYPE(Wakeup_Type)         /* the callback one batch costs the loop */    \
    TYPE(Relay_Type)          /* wrap_future's done-callback */              \
    TYPE(Future_Type)         /* our concurrent.futures.Future subclass */   \
    /* What we use from the stdlib. */                                       \
    IMPORT(cf_Future, "concurrent.futures", "Future")                        \
    IMPORT(CancelledError, "concurrent.futures", "CancelledError")           \
    IMPORT(TimeoutError, "concurrent.futures", "TimeoutError")               \
    IMPORT(BrokenThreadPool, "concurrent.futures.thread", "BrokenThreadPool")\
    IMPORT(logger, "concurrent.futures._base", "LOGGER")                     \
    IMPORT(Thread, "threading", "Thread")                                    \
    IMPORT(current_thread, "threading", "current_thread")                    \
    IMPORT(Condition, "threading", "Condition")                              \
    IMPORT(get_running_loop, "asyncio", "get_running_loop")                  \
    IMPORT(convert_future_exc, "asyncio.futures", "_convert_future_exc")     \
    IMPORT(Executor_map, "concurrent.futures", "Executor.map")               \
    /* The Future states, in the order of future.c's ST_* */                 \
    IMPORT(state_PENDING, "concurrent.futures._base", "PENDING")             \
    IMPORT(state_RUNNING, "concurrent.futures._base", "RUNNING")             \
    IMPORT(state_CANCELLED, "concurrent.futures._base", "CANCELLED")         \
    IMPORT(state_CANCELLED_AND_NOTIFIED, "concurrent.futures._base",         \
           "CANCELLED_AND_NOTIFIED")                                         \
    IMPORT(state_FINISHED, "concurrent.futures._base", "FINISHED")           \
    /* The stdlib Future's methods, our slow paths. */                       \
    IMPORT(base_result, "concurrent.futures", "Future.result")               \
    IMPORT(base_exception, "concurrent.futures", "Future.exception")         \
    IMPORT(base_set_running, "concurrent.futures",                           \
           "Future.set_running_or_notify_cancel")                            \
    IMPORT(base_set_result, "concurrent.futures", "Future.set_result")       \
    IMPORT(base_set_exception, "concurrent.futures", "Future.set_exception") \
    IMPORT(base_add_done_callback, "concurrent.futures",                     \
           "Future.add_done_callback")                                       \
    /* Made by module_exec. */                                               \
    SET(submit_descr)         /* Pool.submit, to spot an override */         \
    SET(channels)             /* dict: weakref(loop) -> weakref(Channel),    \
                                 for loops that take no attribute */         \
    SET(channels_pop)         /* channels.pop: the weakrefs' callback */     \
    SET(empty_tuple)                                                         \
    /* Interned method, attribute and keyword names. */                      \
    NAME(s_set_result, "set_result")                                         \
    NAME(s_set_exception, "set_exception")                                   \
    NAME(s_cancel, "cancel")                                                 \
    NAME(s_cancelled, "cancelled")                                           \
    NAME(s_done, "done")                                                     \
    NAME(s_create_future, "create_future")                                   \
    NAME(s_call_soon_threadsafe, "call_soon_threadsafe")                     \
    NAME(s_add_done_callback, "add_done_callback")                           \
    NAME(s_exception, "exception")                                           \
    NAME(s_result, "result")                                                 \
    NAME(s_start, "start")                                                   \
    NAME(s_critical, "critical")                                             \
    NAME(s_submit, "submit")                                                 \
    NAME(s_name, "name")                                                     \
    NAME(s_target, "target")                                                 \
    NAME(s_exc_info, "exc_info")                                             \
    NAME(s_worker, "_worker")                                                \
    NAME(s_is_closed, "is_closed")                                           \
    NAME(s_args, "args")                                                     \
    NAME(s_loop_channel, "_fastexec_channel")

#define FE_STATE_FIELD_TYPE(field) PyTypeObject *field;
#define FE_STATE_FIELD_NAME(field, text) PyObject *field;
#define FE_STATE_FIELD_IMPORT(field, mod, attr) PyObject *field;
#define FE_STATE_FIELD_SET(field) PyObject *field;

typedef struct {
    FE_STATE_LIST(FE_STATE_FIELD_TYPE, FE_STATE_FIELD_NAME, FE_STATE_FIELD_IMPORT, FE_STATE_FIELD_SET)

    /* Set once by fastexec's threading atexit hook: no new work after it.
     * Atomic (read by workers without the GIL): fe_interpreter_shutdown. */
    int interpreter_shutdown;
} fe_state;

/* The module definition (_fastexec.c), by which types find their state. */
extern PyModuleDef fe_module_def;

static inline fe_state *
fe_state_of_module(PyObject *module)
{
    void *st = PyModule_GetState(module);
    assert(st != NULL);
    return (fe_state *)st;
}

/* The module of `tp` (one of our types or a Python subclass of one):
 * borrowed, or NULL with TypeError. */
static inline PyObject *
fe_module_by_type(PyTypeObject *tp)
{
    return fe_type_module_by_def(tp, &fe_module_def);
}

/* The state of `tp`'s module, or NULL with TypeError. */
static inline fe_state *
fe_state_by_type(PyTypeObject *tp)
{
    PyObject *m = fe_module_by_type(tp);
    return m != NULL ? fe_state_of_module(m) : NULL;
}

static inline int
fe_interpreter_shutdown(fe_state *st)
{
    return __atomic_load_n(&st->interpreter_shutdown, __ATOMIC_ACQUIRE);
}

#endif /* FASTEXEC_STATE_H */

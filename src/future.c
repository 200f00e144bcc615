/* fastexec Future: concurrent.futures.Future with its hot paths in C.
 *
 * Why: a stdlib Future is seven GC-tracked objects (the Future, a Condition,
 * its RLock, a deque, bound methods, two lists).  With 100,000 futures
 * pending, collecting them was ~40% of submit+result's time (perf).  Ours is
 * one object until somebody needs more.
 *
 * How it stays the stdlib's Future:
 *  - It is a subclass of concurrent.futures.Future, built at import with the
 *    base's layout plus our fields.  Object fields are T_OBJECT_EX members,
 *    so the subtype machinery (subtype_traverse/clear/dealloc) handles their
 *    references, whatever the base layout of this Python version.
 *  - `_state`, `_condition`, `_waiters`, `_done_callbacks` are properties
 *    over the C fields; `_condition` is created on first access.
 *  - Fast paths run only while no Condition exists, and run entirely with
 *    the GIL held, never releasing it between their check and their update:
 *    so no Python code can observe them half-done.  Code that needs the
 *    Condition (wait(), as_completed(), result() that must block, cancel(),
 *    repr()) creates it, and from then on every method defers to the
 *    stdlib's own Python method, which takes the Condition: the stdlib's
 *    locking, exactly.
 *  - Without a GIL (free-threaded builds) the Condition is made at once, so
 *    only the stdlib's paths run.
 */
#include "future.h"

#include <stddef.h>
#include <string.h>
#include <structmember.h>

enum { ST_PENDING = 0, ST_RUNNING, ST_CANCELLED, ST_CANCELLED_AND_NOTIFIED,
       ST_FINISHED, ST_COUNT };

typedef struct {
    /* Owned references, traversed and cleared by the subtype machinery as
     * members (_fastexec_*).  Python code uses the properties below, which
     * never store NULL or a wrong type; the C code still copes with both
     * (a collection clears the fields; the raw members are writable). */
    PyObject *result;             /* _result (property); NULL: None */
    PyObject *exception;          /* _exception (property); NULL: None */
    PyObject *condition;          /* _condition; NULL: none yet */
    PyObject *waiters;            /* _waiters; NULL: [] */
    PyObject *callbacks;          /* _done_callbacks; NULL: [] */
    fe_state *st;
    int state;
} fe_fut;

/* Where our fields start: after the base's layout.  The same for every
 * module object in the process (the base layout is the interpreter's). */
static Py_ssize_t fut_offset = -1;

#define FUT(o) ((fe_fut *)((char *)(o) + fut_offset))

/* The stdlib's name of state s (borrowed). */
static inline PyObject *
state_name(fe_state *st, int s)
{
    switch (s) {
    case ST_PENDING: return st->state_PENDING;
    case ST_RUNNING: return st->state_RUNNING;
    case ST_CANCELLED: return st->state_CANCELLED;
    case ST_CANCELLED_AND_NOTIFIED: return st->state_CANCELLED_AND_NOTIFIED;
    default: assert(s == ST_FINISHED); return st->state_FINISHED;
    }
}

static inline int
is_done(int s)
{
    return s == ST_CANCELLED || s == ST_CANCELLED_AND_NOTIFIED || s == ST_FINISHED;
}

/* Nothing but the future itself is involved in settling it: no Condition
 * (so no lock), no waiters, no callbacks.  (After fork, the child may only
 * settle such futures: any lock may be held by a thread that is gone, and
 * callbacks are the parent's.) */
/* The length of a list field: 0 for NULL, -1 if it holds a non-list. */
static inline Py_ssize_t
list_len(PyObject *list)
{
    if (list == NULL)
        return 0;
    return PyList_Check(list) ? PyList_GET_SIZE(list) : -1;
}

int
fe_future_lock_free(PyObject *self)
{
    fe_fut *f = FUT(self);
    return f->condition == NULL && list_len(f->waiters) == 0 &&
           list_len(f->callbacks) == 0;
}

/* Our C paths may run: no Condition (so no lock to take), no waiters, and
 * fields of the types they index. */
static inline int
on_fast_path(fe_fut *f)
{
    return f->condition == NULL && list_len(f->waiters) == 0 &&
           list_len(f->callbacks) >= 0;
}

/* Call the stdlib's method `name` of concurrent.futures.Future on self. */
static PyObject *
call_base(PyObject *self, PyObject *func, PyObject *arg)
{
    PyObject *args[2] = {self, arg};
    return PyObject_Vectorcall(func, args, arg ? 2 : 1, NULL);
}

static void
fut_init_fields(fe_state *st, PyObject *self)
{
    fe_fut *f = FUT(self);
    f->st = st;
    f->state = ST_PENDING;
    Py_XSETREF(f->result, Py_NewRef(Py_None));
    Py_XSETREF(f->exception, Py_NewRef(Py_None));
    Py_CLEAR(f->condition);
    Py_CLEAR(f->waiters);
    Py_CLEAR(f->callbacks);
}

/* Create the Condition if there is none.  Condition() runs Python code, so
 * another thread may create one meanwhile: the first one stored wins (waiters
 * on a Condition that was then overwritten would never be notified). */
static int
fut_make_condition(fe_fut *f)
{
    if (f->condition != NULL)
        return 0;
    PyObject *cond = PyObject_CallNoArgs(f->st->Condition);
    if (cond == NULL)
        return -1;
    if (f->condition == NULL)
        f->condition = cond;
    else
        Py_DECREF(cond);
    return 0;
}

/* *slot, made an empty list if NULL (the same first-one-wins rule: creating
 * a list can run a collection, and finalizers can switch threads). */
static int
fut_ensure_list(PyObject **slot)
{
    if (*slot != NULL)
        return 0;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return -1;
    if (*slot == NULL)
        *slot = list;
    else
        Py_DECREF(list);
    return 0;
}

/* A new, pending future of `type`.  Every field is valid from allocation
 * on, so a subclass whose __init__ doesn't call ours (or Future.__new__
 * alone) is still a pending future, never a crash. */
static PyObject *
fut_alloc(fe_state *st, PyTypeObject *type)
{
    PyObject *self = type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    fut_init_fields(st, self);
    if (FE_FREE_THREADED && fut_make_condition(FUT(self)) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}

/* A new, pending Future (used by submit). */
PyObject *
fe_future_new(fe_state *st)
{
    return fut_alloc(st, st->Future_Type);
}

static PyObject *
fut_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    fe_state *st = fe_state_by_type(type);
    if (st == NULL)
        return NULL;
    return fut_alloc(st, type);
}

static int
fut_tp_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Future() takes no arguments");
        return -1;
    }
    /* As the stdlib's __init__: a pending future again. */
    fut_init_fields(FUT(self)->st, self);
    if (FE_FREE_THREADED && fut_make_condition(FUT(self)) < 0)
        return -1;
    return 0;
}

/* Run the done-callbacks, as Future._invoke_callbacks: an Exception from a
 * callback is logged, anything else propagates. */
static int
fut_invoke_callbacks(PyObject *self)
{
    fe_fut *f = FUT(self);
    fe_state *st = f->st;
    if (list_len(f->callbacks) <= 0)
        return 0;
    PyObject *cbs = Py_NewRef(f->callbacks);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cbs); i++) {
        PyObject *cb = Py_NewRef(PyList_GET_ITEM(cbs, i));
        PyObject *r = PyObject_CallOneArg(cb, self);
        Py_DECREF(cb);
        if (r != NULL) {
            Py_DECREF(r);
            continue;
        }
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_DECREF(cbs);
            return -1;
        }
        PyObject *exc = fe_fetch_exception();
        /* LOGGER.exception('exception calling callback for %r', self) */
        PyObject *meth = PyObject_GetAttrString(st->logger, "exception");
        PyObject *msg = PyUnicode_FromString("exception calling callback for %r");
        PyObject *kw = meth && msg ? Py_BuildValue("{sO}", "exc_info", exc) : NULL;
        PyObject *a = kw ? PyTuple_Pack(2, msg, self) : NULL;
        PyObject *lr = a ? PyObject_Call(meth, a, kw) : NULL;
        Py_XDECREF(lr);
        Py_XDECREF(a);
        Py_XDECREF(kw);
        Py_XDECREF(msg);
        Py_XDECREF(meth);
        Py_DECREF(exc);
        if (lr == NULL)
            PyErr_WriteUnraisable(self);
    }
    Py_DECREF(cbs);
    return 0;
}

/* set_running_or_notify_cancel(): 1 running, 0 cancelled, -1 error. */
int
fe_future_set_running(PyObject *self)
{
    fe_fut *f = FUT(self);
    if (on_fast_path(f)) {
        if (f->state == ST_PENDING) {
            f->state = ST_RUNNING;
            return 1;
        }
        if (f->state == ST_CANCELLED) {
            /* No waiters (they need the Condition) and no notify needed:
             * cancel() notified. */
            f->state = ST_CANCELLED_AND_NOTIFIED;
            return 0;
        }
    }
    PyObject *r = call_base(self, f->st->base_set_running, NULL);
    if (r == NULL)
        return -1;
    int running = PyObject_IsTrue(r);
    Py_DECREF(r);
    return running;
}

/* set_result / set_exception.  0 or -1 with an exception. */
static int
fut_settle(PyObject *self, PyObject *value, int is_exc)
{
    fe_fut *f = FUT(self);
    fe_state *st = f->st;
    if (!on_fast_path(f) || is_done(f->state)) {
        /* The stdlib's method: its Condition, or its InvalidStateError. */
        PyObject *r = call_base(self, is_exc ? st->base_set_exception
                                             : st->base_set_result, value);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        return 0;
    }
    if (is_exc)
        Py_XSETREF(f->exception, Py_NewRef(value));
    else
        Py_XSETREF(f->result, Py_NewRef(value));
    f->state = ST_FINISHED;
    return fut_invoke_callbacks(self);
}

int
fe_future_set_result(PyObject *self, PyObject *value)
{
    return fut_settle(self, value, 0);
}

int
fe_future_set_exception(PyObject *self, PyObject *exc)
{
    return fut_settle(self, exc, 1);
}

/* ---------------------------------------------------------------- sink */

/* submit()'s jobs: their outcome settles job->future (ours). */

static int
cf_wanted(fe_state *st, fe_job *job)
{
    int running = fe_future_set_running(job->future);
    if (running < 0) {
        /* Already running or done, which only someone else's meddling can
         * cause: report it, skip the job. */
        PyErr_WriteUnraisable(job->future);
    }
    return running > 0;     /* 0: cancelled */
}

static void
cf_deliver(fe_state *st, fe_job *job, fe_outcome outcome, PyObject *value)
{
    int rc = outcome == FE_RESULT ? fe_future_set_result(job->future, value)
                                  : fe_future_set_exception(job->future, value);
    Py_DECREF(value);
    if (rc < 0)
        PyErr_WriteUnraisable(job->future);
}

static void
cf_cancel(fe_state *st, fe_job *job)
{
    PyObject *r = PyObject_CallMethodNoArgs(job->future, st->s_cancel);
    if (r == NULL)
        PyErr_WriteUnraisable(job->future);
    Py_XDECREF(r);
    fe_job_free(job);
}

static void
cf_fail(fe_state *st, fe_job *job, PyObject *exc)
{
    if (fe_future_set_exception(job->future, exc) < 0)
        PyErr_WriteUnraisable(job->future);
    fe_job_free(job);
}

/* Settle the child's copy only if that touches nothing but the future. */
static void
cf_fork_child(fe_state *st, fe_job *job, int running, PyObject **err)
{
    if (fe_future_lock_free(job->future)) {
        if (!running) {
            cf_cancel(st, job);
            return;
        }
        if (*err == NULL)
            *err = PyObject_CallFunction(
                PyExc_RuntimeError, "s",
                "the worker running this call did not survive "
                "os.fork() (this is the child process; the parent "
                "runs it)");
        if (*err != NULL) {
            cf_fail(st, job, *err);
            return;
        }
        PyErr_WriteUnraisable(job->future);
    }
    fe_job_free(job);
}

const fe_sink fe_future_sink = {
    .name = "concurrent future",
    .wanted = cf_wanted,
    .deliver = cf_deliver,
    .hand_off = NULL,             /* freed once delivered */
    .cancel = cf_cancel,
    .fail = cf_fail,
    .fork_child = cf_fork_child,
    .release = NULL,
    .runs_callbacks = 1,          /* add_done_callback's, in the worker */
};

/* ------------------------------------------------------------- methods */

static PyObject *
fut_set_result(PyObject *self, PyObject *value)
{
    if (fut_settle(self, value, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
fut_set_exception(PyObject *self, PyObject *exc)
{
    if (fut_settle(self, exc, 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
fut_set_running_or_notify_cancel(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int r = fe_future_set_running(self);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
fut_done(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(is_done(FUT(self)->state));
}

static PyObject *
fut_cancelled(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    int s = FUT(self)->state;
    return PyBool_FromLong(s == ST_CANCELLED || s == ST_CANCELLED_AND_NOTIFIED);
}

static PyObject *
fut_running(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(FUT(self)->state == ST_RUNNING);
}

/* result(timeout=None) / exception(timeout=None): answered at once when the
 * future is done; otherwise the stdlib's method, which waits on the
 * Condition (creating it makes every other method take the stdlib's path). */
static PyObject *
fut_result_or_exception(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames, int want_exc)
{
    fe_fut *f = FUT(self);
    fe_state *st = f->st;
    if (f->state == ST_FINISHED) {
        /* (NULL only once a collection cleared the future.) */
        PyObject *exc = f->exception ? f->exception : Py_None;
        if (want_exc)
            return Py_NewRef(exc);
        if (exc != Py_None) {
            fe_raise(exc);
            return NULL;
        }
        return Py_NewRef(f->result ? f->result : Py_None);
    }
    if (f->state == ST_CANCELLED || f->state == ST_CANCELLED_AND_NOTIFIED) {
        PyErr_SetNone(st->CancelledError);
        return NULL;
    }
    if (fut_make_condition(f) < 0)
        return NULL;
    PyObject *func = want_exc ? st->base_exception : st->base_result;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *small[8];
    PyObject **full = small;
    if (nargs + nkw + 1 > 8) {
        full = PyMem_Malloc((nargs + nkw + 1) * sizeof(PyObject *));
        if (full == NULL)
            return PyErr_NoMemory();
    }
    full[0] = self;
    for (Py_ssize_t i = 0; i < nargs + nkw; i++)
        full[i + 1] = args[i];
    PyObject *r = PyObject_Vectorcall(func, full, nargs + 1, kwnames);
    if (full != small)
        PyMem_Free(full);
    return r;
}

static PyObject *
fut_result(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return fut_result_or_exception(self, args, PyVectorcall_NARGS(nargsf), kwnames, 0);
}

static PyObject *
fut_exception(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return fut_result_or_exception(self, args, PyVectorcall_NARGS(nargsf), kwnames, 1);
}

static PyObject *
fut_add_done_callback(PyObject *self, PyObject *fn)
{
    fe_fut *f = FUT(self);
    if (on_fast_path(f) && !is_done(f->state)) {
        if (fut_ensure_list(&f->callbacks) < 0)
            return NULL;
        /* Still on the fast path: creating the list ran no Python code
         * unless a collection did, and then we check again. */
        if (!on_fast_path(f) || is_done(f->state))
            return call_base(self, f->st->base_add_done_callback, fn);
        if (PyList_Append(f->callbacks, fn) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    /* Done already (call now, logging an Exception), or on the stdlib's path. */
    return call_base(self, f->st->base_add_done_callback, fn);
}

/* ------------------------------------------------------------ properties */

static PyObject *
fut_get_state(PyObject *self, void *Py_UNUSED(closure))
{
    fe_fut *f = FUT(self);
    return Py_NewRef(state_name(f->st, f->state));
}

static int
fut_set_state(PyObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    fe_fut *f = FUT(self);
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete _state");
        return -1;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        int eq = PyObject_RichCompareBool(value, state_name(f->st, i), Py_EQ);
        if (eq < 0)
            return -1;
        if (eq) {
            f->state = i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "not a Future state: %R", value);
    return -1;
}

static PyObject *
fut_get_condition(PyObject *self, void *Py_UNUSED(closure))
{
    fe_fut *f = FUT(self);
    if (fut_make_condition(f) < 0)
        return NULL;
    return Py_NewRef(f->condition);
}

static int
fut_set_condition(PyObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    fe_fut *f = FUT(self);
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete _condition");
        return -1;
    }
    Py_XSETREF(f->condition, Py_NewRef(value));
    return 0;
}

static PyObject **
list_field(PyObject *self, void *closure)
{
    fe_fut *f = FUT(self);
    return closure ? &f->callbacks : &f->waiters;
}

static PyObject *
fut_get_list(PyObject *self, void *closure)
{
    PyObject **slot = list_field(self, closure);
    if (fut_ensure_list(slot) < 0)
        return NULL;
    return Py_NewRef(*slot);
}

static int
fut_set_list(PyObject *self, PyObject *value, void *closure)
{
    PyObject **slot = list_field(self, closure);
    if (value != NULL && !PyList_Check(value)) {
        /* Our fast paths index it as a list. */
        PyErr_SetString(PyExc_TypeError, "must be a list");
        return -1;
    }
    Py_XSETREF(*slot, Py_XNewRef(value));
    return 0;
}

/* _result and _exception: the stdlib's methods assign them; deleting them
 * would leave a NULL our fast paths return, so it is refused. */
static PyObject **
value_field(PyObject *self, void *closure)
{
    fe_fut *f = FUT(self);
    return closure ? &f->exception : &f->result;
}

static PyObject *
fut_get_value(PyObject *self, void *closure)
{
    PyObject *v = *value_field(self, closure);
    /* NULL once a collection cleared the future, or the raw member was
     * deleted. */
    return Py_NewRef(v != NULL ? v : Py_None);
}

static int
fut_set_value(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "can't delete %s",
                     closure ? "_exception" : "_result");
        return -1;
    }
    /* X: the raw member behind it may have been deleted. */
    Py_XSETREF(*value_field(self, closure), Py_NewRef(value));
    return 0;
}

static PyMethodDef fut_methods[] = {
    {"set_result", fut_set_result, METH_O, NULL},
    {"set_exception", fut_set_exception, METH_O, NULL},
    {"set_running_or_notify_cancel", fut_set_running_or_notify_cancel,
     METH_NOARGS, NULL},
    {"done", fut_done, METH_NOARGS, NULL},
    {"cancelled", fut_cancelled, METH_NOARGS, NULL},
    {"running", fut_running, METH_NOARGS, NULL},
    {"result", (PyCFunction)(void (*)(void))fut_result,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"exception", (PyCFunction)(void (*)(void))fut_exception,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"add_done_callback", fut_add_done_callback, METH_O, NULL},
    {NULL, NULL}
};

static PyGetSetDef fut_getset[] = {
    {"_state", fut_get_state, fut_set_state, NULL, NULL},
    {"_result", fut_get_value, fut_set_value, NULL, NULL},
    {"_exception", fut_get_value, fut_set_value, NULL, (void *)1},
    {"_condition", fut_get_condition, fut_set_condition, NULL, NULL},
    {"_waiters", fut_get_list, fut_set_list, NULL, NULL},
    {"_done_callbacks", fut_get_list, fut_set_list, NULL, (void *)1},
    {NULL}
};

/* The text signature of each method (for inspect.signature), by name. */
static const char *
fut_text_signature(const char *name)
{
    static const char *const sigs[][2] = {
        {"set_result", "set_result($self, result, /)"},
        {"set_exception", "set_exception($self, exception, /)"},
        {"set_running_or_notify_cancel", "set_running_or_notify_cancel($self, /)"},
        {"done", "done($self, /)"},
        {"cancelled", "cancelled($self, /)"},
        {"running", "running($self, /)"},
        {"result", "result($self, /, timeout=None)"},
        {"exception", "exception($self, /, timeout=None)"},
        {"add_done_callback", "add_done_callback($self, fn, /)"},
    };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        if (strcmp(sigs[i][0], name) == 0)
            return sigs[i][1];
    }
    return NULL;
}

/* Copy the docstrings of the stdlib's methods onto ours, after our text
 * signatures. */
static int
copy_docs(PyObject *base)
{
    for (PyMethodDef *m = fut_methods; m->ml_name != NULL; m++) {
        if (m->ml_doc != NULL)
            continue;
        const char *sig = fut_text_signature(m->ml_name);
        PyObject *func = PyObject_GetAttrString(base, m->ml_name);
        if (func == NULL)
            return -1;
        PyObject *doc = PyObject_GetAttrString(func, "__doc__");
        Py_DECREF(func);
        if (doc == NULL)
            return -1;
        if (PyUnicode_Check(doc)) {
            /* Kept for the life of the process: method docs are static. */
            const char *s = PyUnicode_AsUTF8(doc);
            if (s == NULL) {
                Py_DECREF(doc);
                return -1;
            }
            size_t siglen = sig != NULL ? strlen(sig) + 5 : 0;  /* "\n--\n\n" */
            char *copy = PyMem_RawMalloc(siglen + strlen(s) + 1);
            if (copy == NULL) {
                Py_DECREF(doc);
                PyErr_NoMemory();
                return -1;
            }
            copy[0] = '\0';
            if (sig != NULL) {
                strcpy(copy, sig);
                strcat(copy, "\n--\n\n");
            }
            strcat(copy, s);
            m->ml_doc = copy;
        }
        Py_DECREF(doc);
    }
    return 0;
}

int
fe_future_init_type(PyObject *module, fe_state *st)
{
    PyTypeObject *base = (PyTypeObject *)st->cf_Future;
    Py_ssize_t offset = base->tp_basicsize;
    offset = (offset + (Py_ssize_t)_Alignof(fe_fut) - 1) & ~((Py_ssize_t)_Alignof(fe_fut) - 1);
    if (fut_offset >= 0 && fut_offset != offset) {
        PyErr_SetString(PyExc_RuntimeError, "fastexec: Future layout changed");
        return -1;
    }
    fut_offset = offset;
    if (copy_docs((PyObject *)base) < 0)
        return -1;

    /* Members at run-time offsets: the subtype machinery traverses, clears
     * and releases them (T_OBJECT_EX; it skips READONLY members, so they
     * are writable).  Code uses the properties; whatever is stored through
     * the raw names (NULL, a non-list) only takes us off the fast paths. */
    static PyMemberDef members[6];
    members[0] = (PyMemberDef){"_fastexec_result", T_OBJECT_EX,
                               offset + offsetof(fe_fut, result), 0, NULL};
    members[1] = (PyMemberDef){"_fastexec_exception", T_OBJECT_EX,
                               offset + offsetof(fe_fut, exception), 0, NULL};
    members[2] = (PyMemberDef){"_fastexec_condition", T_OBJECT_EX,
                               offset + offsetof(fe_fut, condition), 0, NULL};
    members[3] = (PyMemberDef){"_fastexec_waiters", T_OBJECT_EX,
                               offset + offsetof(fe_fut, waiters), 0, NULL};
    members[4] = (PyMemberDef){"_fastexec_callbacks", T_OBJECT_EX,
                               offset + offsetof(fe_fut, callbacks), 0, NULL};
    members[5] = (PyMemberDef){NULL};

    PyType_Slot slots[] = {
        {Py_tp_doc, "concurrent.futures.Future, with its hot paths in C "
                    "(what fastexec's submit returns)."},
        {Py_tp_new, fut_tp_new},
        {Py_tp_init, fut_tp_init},
        {Py_tp_methods, fut_methods},
        {Py_tp_getset, fut_getset},
        {Py_tp_members, members},
        {0, NULL},
    };
    PyType_Spec spec = {
        .name = "fastexec._fastexec.Future",
        .basicsize = (int)(offset + sizeof(fe_fut)),
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
        .slots = slots,
    };
    PyObject *bases = PyTuple_Pack(1, (PyObject *)base);
    if (bases == NULL)
        return -1;
    st->Future_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &spec, bases);
    Py_DECREF(bases);
    if (st->Future_Type == NULL)
        return -1;
    if (!(st->Future_Type->tp_flags & Py_TPFLAGS_HAVE_GC)) {
        PyErr_SetString(PyExc_RuntimeError, "fastexec: Future is not a GC type");
        return -1;
    }
    return PyModule_AddType(module, st->Future_Type);
}

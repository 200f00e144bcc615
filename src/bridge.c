/* fastexec bridge: finished jobs travel to their event loop.
 *
 * Each loop has one Channel: an outbox of finished jobs guarded by its own
 * mutex.  A worker appends a job; only the append that finds the outbox
 * without a pending wakeup calls loop.call_soon_threadsafe(Wakeup), so a burst
 * of results costs the loop one wakeup and one callback, which resolves every
 * future in the outbox in one pass.
 *
 * A Wakeup that is destroyed without having run (the loop was closed with the
 * callback still queued, or refused it because it is closed) drops the
 * outbox: its futures belong to a dead loop and nobody can await them.  So a
 * closed loop costs no leak and no error.
 *
 * Who owns a channel: the loop, as its attribute `_fastexec_channel`, so that
 * a loop dropped without close() while results are on their way is still
 * collected (loop -> channel -> outbox -> futures -> loop is an ordinary
 * cycle; a module-level table would keep it alive for good).  A loop that
 * takes no attribute gets its channel from a table of weak references, kept
 * alive only by the work in flight.
 */
#include "bridge.h"

#include <stddef.h>
#include <structmember.h>

typedef struct fe_channel {
    PyObject_HEAD
    fe_state *st;
    PyObject *module;             /* keeps `st` alive */
    PyObject *weakreflist;        /* for the table of loops without a dict */
    pthread_mutex_t mu;           /* guards the outbox and `scheduled` */
    fe_job *head, *tail;
    int scheduled;                /* a Wakeup is on its way to the loop */
} fe_channel;

typedef struct {
    PyObject_HEAD
    fe_channel *chan;             /* owned */
    int fired;
} fe_wakeup;

/* ------------------------------------------------------------- channel */

static fe_channel *
channel_new(fe_state *st)
{
    fe_channel *ch = PyObject_GC_New(fe_channel, st->Channel_Type);
    if (ch == NULL)
        return NULL;
    ch->st = st;
    ch->module = NULL;
    ch->weakreflist = NULL;
    ch->head = ch->tail = NULL;
    ch->scheduled = 0;
    if (pthread_mutex_init(&ch->mu, NULL) != 0) {
        PyObject_GC_Del(ch);
        PyErr_SetString(PyExc_OSError, "pthread_mutex_init failed");
        return NULL;
    }
    ch->module = PyType_GetModule(st->Channel_Type);
    Py_XINCREF(ch->module);
    PyObject_GC_Track(ch);
    return ch;
}

/* Take the whole outbox (and with it the duty to schedule the next wakeup). */
static fe_job *
channel_take(fe_channel *ch)
{
    pthread_mutex_lock(&ch->mu);
    fe_job *list = ch->head;
    ch->head = ch->tail = NULL;
    ch->scheduled = 0;
    pthread_mutex_unlock(&ch->mu);
    return list;
}

static int
channel_traverse(fe_channel *ch, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(ch));
    Py_VISIT(ch->module);
    /* Jobs are appended and taken with the GIL held, as traverse runs, so
     * the outbox is the same in every pass of a collection; the lock is
     * never held by a thread waiting for the GIL. */
    int rc = 0;
    pthread_mutex_lock(&ch->mu);
    for (fe_job *j = ch->head; j != NULL && rc == 0; j = j->next)
        rc = fe_job_traverse(j, visit, arg);
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

static int
channel_clear(fe_channel *ch)
{
    fe_job_list_free(channel_take(ch));
    return 0;
}

static void
channel_dealloc(fe_channel *ch)
{
    PyTypeObject *tp = Py_TYPE(ch);
    PyObject_GC_UnTrack(ch);
    if (ch->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)ch);
    channel_clear(ch);
    Py_CLEAR(ch->module);
    pthread_mutex_destroy(&ch->mu);
    tp->tp_free((PyObject *)ch);
    Py_DECREF(tp);
}

static PyMemberDef channel_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(fe_channel, weakreflist), READONLY},
    {NULL}
};

static PyType_Slot channel_slots[] = {
    {Py_tp_members, channel_members},
    {Py_tp_doc, "The outbox of finished jobs of one event loop (internal)."},
    {Py_tp_dealloc, channel_dealloc},
    {Py_tp_traverse, channel_traverse},
    {Py_tp_clear, channel_clear},
    {0, NULL}
};

static PyType_Spec channel_spec = {
    .name = "fastexec._fastexec._Channel",
    .basicsize = sizeof(fe_channel),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = channel_slots,
};

/* For loops that take no attribute: channels[weakref(loop)] is a weakref to
 * the channel, which the loop's jobs keep alive.  The key's callback drops
 * the entry when the loop goes. */
static fe_channel *
channel_from_table(fe_state *st, PyObject *loop)
{
    PyObject *probe = PyWeakref_NewRef(loop, NULL);
    if (probe == NULL) {
        /* A loop that can't even be weakly referenced gets a channel per
         * call: correct, only without coalescing. */
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear();
        return channel_new(st);
    }
    /* A plain weakref compares equal to the key while the loop lives (as
     * WeakKeyDictionary looks things up). */
    PyObject *ref = PyDict_GetItemWithError(st->channels, probe);
    Py_DECREF(probe);
    if (ref != NULL) {
        PyObject *ch = fe_weakref_target(ref);
        if (ch != NULL)
            return (fe_channel *)ch;
    }
    else if (PyErr_Occurred())
        return NULL;
    fe_channel *ch = channel_new(st);
    if (ch == NULL)
        return NULL;
    PyObject *key = PyWeakref_NewRef(loop, st->channels_pop);
    PyObject *value = key ? PyWeakref_NewRef((PyObject *)ch, NULL) : NULL;
    if (value == NULL || PyDict_SetItem(st->channels, key, value) < 0) {
        Py_XDECREF(key);
        Py_XDECREF(value);
        Py_DECREF(ch);
        return NULL;
    }
    Py_DECREF(key);
    Py_DECREF(value);
    return ch;
}

/* Clear an Exception raised by the loop's attribute access (a loop class
 * may refuse attributes in its own way); 0 if it was something else
 * (KeyboardInterrupt...), which is left set. */
static int
clear_attribute_error(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return 0;
    PyErr_Clear();
    return 1;
}

static fe_channel *
channel_for_loop(fe_state *st, PyObject *loop)
{
    PyObject *found = PyObject_GetAttr(loop, st->s_loop_channel);
    if (found != NULL) {
        if (Py_IS_TYPE(found, st->Channel_Type))
            return (fe_channel *)found;
        /* Something else under our name: leave it alone. */
        Py_DECREF(found);
        return channel_from_table(st, loop);
    }
    if (!clear_attribute_error())
        return NULL;
    fe_channel *ch = channel_new(st);
    if (ch == NULL)
        return NULL;
    if (PyObject_SetAttr(loop, st->s_loop_channel, (PyObject *)ch) == 0)
        return ch;
    Py_DECREF(ch);
    if (!clear_attribute_error())
        return NULL;
    return channel_from_table(st, loop);
}

/* --------------------------------------------------------------- wakeup */

/* Resolve one finished job's asyncio future on the loop's thread. */
static void
resolve_job(fe_state *st, fe_job *job)
{
    PyObject *fut = job->future, *r;
    if (job->outcome == FE_CANCELLED) {
        r = PyObject_CallMethodNoArgs(fut, st->s_cancel);
        goto done;
    }
    /* Cancelled while it ran: drop the outcome quietly, as the stdlib. */
    r = PyObject_CallMethodNoArgs(fut, st->s_done);
    if (r == NULL)
        goto done;
    int is_done = (r == Py_True);
    Py_DECREF(r);
    if (is_done)
        return;
    if (job->outcome == FE_RESULT) {
        r = PyObject_CallMethodOneArg(fut, st->s_set_result, job->value);
    }
    else {
        /* As the stdlib's _copy_future_state: concurrent.futures'
         * CancelledError, InvalidStateError (and, before 3.11, TimeoutError)
         * become asyncio's, by asyncio's own _convert_future_exc (so each
         * version's rules, traceback included).  A relay's outcome was
         * converted already; converting again changes nothing. */
        PyObject *exc = PyObject_CallOneArg(st->convert_future_exc, job->value);
        if (exc == NULL) {
            r = NULL;
            goto done;
        }
        if (PyErr_GivenExceptionMatches(exc, PyExc_StopIteration)) {
            /* asyncio futures refuse StopIteration (the stdlib bridge then
             * leaves the awaiting task hanging); deliver what a coroutine
             * would: a RuntimeError caused by it. */
            PyObject *rt = PyObject_CallFunction(
                PyExc_RuntimeError, "s", "StopIteration raised in an executor job");
            if (rt == NULL) {
                Py_DECREF(exc);
                r = NULL;
                goto done;
            }
            PyException_SetCause(rt, Py_NewRef(exc));
            PyException_SetContext(rt, Py_NewRef(exc));
            r = PyObject_CallMethodOneArg(fut, st->s_set_exception, rt);
            Py_DECREF(rt);
        }
        else
            r = PyObject_CallMethodOneArg(fut, st->s_set_exception, exc);
        Py_DECREF(exc);
    }
done:
    if (r == NULL)
        PyErr_WriteUnraisable(fut);
    Py_XDECREF(r);
}

static PyObject *
wakeup_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    fe_wakeup *w = (fe_wakeup *)self;
    fe_channel *ch = w->chan;
    w->fired = 1;
    fe_job *list = channel_take(ch), *job;
    while ((job = fe_job_list_pop(&list)) != NULL) {
        resolve_job(ch->st, job);
        fe_job_free(job);
    }
    Py_RETURN_NONE;
}

static int
wakeup_traverse(fe_wakeup *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    Py_VISIT((PyObject *)w->chan);
    return 0;
}

static int
wakeup_clear(fe_wakeup *w)
{
    Py_CLEAR(w->chan);
    return 0;
}

static void
wakeup_dealloc(fe_wakeup *w)
{
    PyTypeObject *tp = Py_TYPE(w);
    PyObject_GC_UnTrack(w);
    if (!w->fired && w->chan != NULL) {
        /* Never ran: the loop is closed or refused the callback.  The
         * outbox's futures can't be resolved; drop them (and let the next
         * outcome try to schedule again). */
        PyObject *exc = PyErr_Occurred() ? fe_fetch_exception() : NULL;
        fe_job_list_free(channel_take(w->chan));
        if (exc != NULL) {
            fe_raise(exc);
            Py_DECREF(exc);
        }
    }
    wakeup_clear(w);
    tp->tp_free((PyObject *)w);
    Py_DECREF(tp);
}

static PyType_Slot wakeup_slots[] = {
    {Py_tp_doc, "Resolves a batch of finished jobs on the loop (internal)."},
    {Py_tp_dealloc, wakeup_dealloc},
    {Py_tp_traverse, wakeup_traverse},
    {Py_tp_clear, wakeup_clear},
    {Py_tp_call, wakeup_call},
    {0, NULL}
};

static PyType_Spec wakeup_spec = {
    .name = "fastexec._fastexec._Wakeup",
    .basicsize = sizeof(fe_wakeup),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = wakeup_slots,
};

/* Schedule a Wakeup on the loop; the caller set ch->scheduled for it. */
static void
channel_schedule(fe_state *st, fe_channel *ch, PyObject *loop)
{
    fe_wakeup *w = PyObject_GC_New(fe_wakeup, st->Wakeup_Type);
    if (w == NULL) {
        /* As a refused wakeup (below): reported, outbox kept. */
        pthread_mutex_lock(&ch->mu);
        ch->scheduled = 0;
        pthread_mutex_unlock(&ch->mu);
        PyErr_WriteUnraisable(loop);
        return;
    }
    w->chan = (fe_channel *)Py_NewRef((PyObject *)ch);
    w->fired = 0;
    PyObject_GC_Track(w);
    PyObject *r = PyObject_CallMethodOneArg(loop, st->s_call_soon_threadsafe,
                                            (PyObject *)w);
    if (r == NULL) {
        /* A closed loop refuses (RuntimeError): its outbox is dropped
         * quietly when `w` goes, below.  Anything else (a MemoryError, a
         * KeyboardInterrupt in the main thread) is reported, and the outbox
         * is kept for the next outcome to schedule again: nothing is lost. */
        int closed = 0;
        PyObject *exc = fe_fetch_exception();
        PyObject *c = PyObject_CallMethodNoArgs(loop, st->s_is_closed);
        if (c != NULL)
            closed = PyObject_IsTrue(c) == 1;
        else
            PyErr_Clear();
        Py_XDECREF(c);
        if (!closed) {
            w->fired = 1;   /* its dealloc must not drop the outbox */
            pthread_mutex_lock(&ch->mu);
            ch->scheduled = 0;
            pthread_mutex_unlock(&ch->mu);
            fe_raise(exc);
            PyErr_WriteUnraisable(loop);
        }
        Py_DECREF(exc);
    }
    Py_XDECREF(r);
    Py_DECREF(w);   /* if the loop is closed, this drops the outbox */
}

/* Hand a finished job to its loop (takes it). */
static void
channel_post(fe_state *st, fe_job *job)
{
    fe_channel *ch = (fe_channel *)job->chan;
    int need_wakeup;
    /* Hold our own references: once appended, the job belongs to the loop. */
    Py_INCREF(ch);
    PyObject *loop = Py_NewRef(job->loop);

    pthread_mutex_lock(&ch->mu);
    job->next = NULL;
    if (ch->tail == NULL)
        ch->head = job;
    else
        ch->tail->next = job;
    ch->tail = job;
    need_wakeup = !ch->scheduled;
    ch->scheduled = 1;
    pthread_mutex_unlock(&ch->mu);

    if (need_wakeup)
        channel_schedule(st, ch, loop);
    Py_DECREF(loop);
    Py_DECREF(ch);
}

PyObject *
fe_channel_for_loop(fe_state *st, PyObject *loop)
{
    return (PyObject *)channel_for_loop(st, loop);
}

/* ---------------------------------------------------------------- sink */

/* Jobs of Pool.run / run_in_executor: the outcome travels in the job, to
 * the channel of the future's loop, which resolves it there. */

static int
async_wanted(fe_state *st, fe_job *job)
{
    /* Cancelled while queued: don't run it (as the stdlib, whose
     * wrap_future cancels the concurrent future it waits on). */
    PyObject *r = PyObject_CallMethodNoArgs(job->future, st->s_done);
    if (r == NULL) {
        PyErr_WriteUnraisable(job->future);
        return 0;
    }
    int done = (r == Py_True);
    Py_DECREF(r);
    return !done;
}

static void
async_deliver(fe_state *st, fe_job *job, fe_outcome outcome, PyObject *value)
{
    Py_CLEAR(job->fn);
    Py_CLEAR(job->args);
    Py_CLEAR(job->kwargs);
    Py_CLEAR(job->ctx);
    job->outcome = outcome;
    job->value = value;
}

static void
async_cancel(fe_state *st, fe_job *job)
{
    Py_CLEAR(job->fn);
    Py_CLEAR(job->args);
    Py_CLEAR(job->kwargs);
    job->outcome = FE_CANCELLED;
    channel_post(st, job);
}

static void
async_fail(fe_state *st, fe_job *job, PyObject *exc)
{
    job->outcome = FE_ERROR;
    job->value = Py_NewRef(exc);
    channel_post(st, job);
}

/* The future and its loop are the parent's: drop the job untouched. */
static void
async_fork_child(fe_state *st, fe_job *job, int running, PyObject **err)
{
    fe_job_free(job);
}

const fe_sink fe_async_sink = {
    .name = "asyncio future",
    .wanted = async_wanted,
    .deliver = async_deliver,
    .hand_off = channel_post,
    .cancel = async_cancel,
    .fail = async_fail,
    .fork_child = async_fork_child,
    .release = NULL,
};

/* --------------------------------------------------------------- relay */

/* wrap_future's callback: on the concurrent future (its outcome goes to the
 * loop through the channel) and on the asyncio future (its cancellation goes
 * to the concurrent future), as asyncio's _chain_future. */
typedef struct {
    PyObject_HEAD
    fe_state *st;
    PyObject *cf;                 /* the concurrent future; cleared once done */
    PyObject *afut;               /* the asyncio future */
    PyObject *loop;
    fe_channel *chan;
} fe_relay;

static int
relay_traverse(fe_relay *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->cf);
    Py_VISIT(r->afut);
    Py_VISIT(r->loop);
    Py_VISIT((PyObject *)r->chan);
    return 0;
}

static int
relay_clear(fe_relay *r)
{
    Py_CLEAR(r->cf);
    Py_CLEAR(r->afut);
    Py_CLEAR(r->loop);
    Py_CLEAR(r->chan);
    return 0;
}

static void
relay_dealloc(fe_relay *r)
{
    PyTypeObject *tp = Py_TYPE(r);
    PyObject_GC_UnTrack(r);
    relay_clear(r);
    tp->tp_free((PyObject *)r);
    Py_DECREF(tp);
}

/* A relayed outcome is a job that was settled before it was made: it never
 * enters a pool, so it has nothing to run, skip, cancel or fail; the
 * channel resolves and frees it like any other. */
static const fe_sink relay_sink = {
    .name = "relay",
    .wanted = NULL,
    .deliver = NULL,
    .hand_off = NULL,
    .cancel = NULL,
    .fail = NULL,
    .fork_child = NULL,
    .release = NULL,
};

/* The concurrent future is done: post its state to the loop. */
static int
relay_source_done(fe_relay *r, PyObject *cf)
{
    fe_state *st = r->st;
    fe_job *job = fe_job_new(&relay_sink);
    if (job == NULL)
        return -1;
    PyObject *c = PyObject_CallMethodNoArgs(cf, st->s_cancelled);
    if (c == NULL)
        goto error;
    int cancelled = (c == Py_True);
    Py_DECREF(c);
    if (cancelled)
        job->outcome = FE_CANCELLED;
    else {
        PyObject *exc = PyObject_CallMethodNoArgs(cf, st->s_exception);
        if (exc == NULL)
            goto error;
        if (exc != Py_None) {
            PyObject *conv = PyObject_CallOneArg(st->convert_future_exc, exc);
            Py_DECREF(exc);
            if (conv == NULL)
                goto error;
            job->outcome = FE_ERROR;
            job->value = conv;
        }
        else {
            Py_DECREF(exc);
            job->value = PyObject_CallMethodNoArgs(cf, st->s_result);
            if (job->value == NULL)
                goto error;
            job->outcome = FE_RESULT;
        }
    }
    job->future = Py_NewRef(r->afut);
    job->loop = Py_NewRef(r->loop);
    job->chan = Py_NewRef((PyObject *)r->chan);
    channel_post(st, job);
    return 0;
error:
    fe_job_free(job);
    return -1;
}

/* Take r->cf (a new reference, or NULL if already taken).  The relay's two
 * callbacks can run at once in two threads of a free-threaded build: the
 * critical section makes the take atomic there (with the GIL it is anyway). */
static PyObject *
relay_take_cf(fe_relay *r)
{
    PyObject *cf;
    FE_BEGIN_CRITICAL_SECTION(r);
    cf = r->cf;
    r->cf = NULL;
    FE_END_CRITICAL_SECTION();
    return cf;
}

static PyObject *
relay_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    fe_relay *r = (fe_relay *)self;
    PyObject *fut;
    if (!PyArg_UnpackTuple(args, "relay", 1, 1, &fut))
        return NULL;
    if (r->afut == NULL)
        Py_RETURN_NONE;
    if (fut == r->afut) {
        /* The asyncio future finished first: pass a cancellation on. */
        PyObject *c = PyObject_CallMethodNoArgs(r->afut, r->st->s_cancelled);
        if (c == NULL)
            return NULL;
        int cancelled = (c == Py_True);
        Py_DECREF(c);
        if (cancelled) {
            PyObject *cf = relay_take_cf(r);
            if (cf == NULL)
                Py_RETURN_NONE;
            PyObject *res = PyObject_CallMethodNoArgs(cf, r->st->s_cancel);
            Py_DECREF(cf);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
        }
        Py_RETURN_NONE;
    }
    /* The concurrent future is done (in whichever thread completed it):
     * from now on a cancellation of the asyncio future has nothing to do. */
    Py_XDECREF(relay_take_cf(r));
    if (relay_source_done(r, fut) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyType_Slot relay_slots[] = {
    {Py_tp_doc, "wrap_future's done-callback (internal)."},
    {Py_tp_dealloc, relay_dealloc},
    {Py_tp_traverse, relay_traverse},
    {Py_tp_clear, relay_clear},
    {Py_tp_call, relay_call},
    {0, NULL}
};

static PyType_Spec relay_spec = {
    .name = "fastexec._fastexec._Relay",
    .basicsize = sizeof(fe_relay),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = relay_slots,
};

PyObject *
fe_wrap_future(fe_state *st, PyObject *cf, PyObject *loop)
{
    PyObject *afut = PyObject_CallMethodNoArgs(loop, st->s_create_future);
    if (afut == NULL)
        return NULL;
    fe_relay *r = PyObject_GC_New(fe_relay, st->Relay_Type);
    if (r == NULL) {
        Py_DECREF(afut);
        return NULL;
    }
    r->st = st;
    r->cf = Py_NewRef(cf);
    r->afut = Py_NewRef(afut);
    r->loop = Py_NewRef(loop);
    r->chan = channel_for_loop(st, loop);
    PyObject_GC_Track(r);
    if (r->chan == NULL)
        goto error;
    PyObject *res = PyObject_CallMethodOneArg(afut, st->s_add_done_callback,
                                              (PyObject *)r);
    if (res == NULL)
        goto error;
    Py_DECREF(res);
    /* May call the relay at once, if cf is already done. */
    res = PyObject_CallMethodOneArg(cf, st->s_add_done_callback, (PyObject *)r);
    if (res == NULL)
        goto error;
    Py_DECREF(res);
    Py_DECREF(r);
    return afut;
error:
    Py_DECREF(r);
    Py_DECREF(afut);
    return NULL;
}

int
fe_bridge_init_types(PyObject *module, fe_state *st)
{
    st->Channel_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &channel_spec, NULL);
    if (st->Channel_Type == NULL)
        return -1;
    st->Wakeup_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &wakeup_spec, NULL);
    if (st->Wakeup_Type == NULL)
        return -1;
    st->Relay_Type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &relay_spec, NULL);
    if (st->Relay_Type == NULL)
        return -1;
    return 0;
}

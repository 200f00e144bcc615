/* fastexec bridge: finished jobs travel to their event loop.
 *
 * Each loop has one Channel: an outbox of finished jobs guarded by its own
 * mutex.  A worker appends a job; only the append that finds the outbox
 * without a pending wakeup calls loop.call_soon_threadsafe(Wakeup), so a burst
 * of results costs the loop one wakeup and one callback, which resolves every
 * future in the outbox in one pass.
 *
 * A Wakeup that is destroyed without having run (call_soon_threadsafe failed,
 * or the loop was closed with the callback still queued) drops the outbox:
 * its futures belong to a dead loop and nobody can await them.  So a closed
 * loop costs no leak and no error.
 */
#include "fastexec.h"

typedef struct fe_channel {
    PyObject_HEAD
    fe_state *st;
    PyObject *module;             /* keeps `st` alive */
    PyObject *loop_ref;           /* a plain weakref to the loop: keeps
                                     PyWeakref_NewRef(loop, NULL) cheap */
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
    ch->loop_ref = NULL;
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

static void
free_list(fe_job *list)
{
    while (list != NULL) {
        fe_job *job = list;
        list = job->next;
        fe_job_free(job);
    }
}

static int
channel_traverse(fe_channel *ch, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(ch));
    Py_VISIT(ch->module);
    Py_VISIT(ch->loop_ref);
    /* Jobs are appended and taken with the GIL held, as traverse runs. */
    if (pthread_mutex_trylock(&ch->mu) == 0) {
        int rc = 0;
        for (fe_job *j = ch->head; j != NULL && rc == 0; j = j->next)
            rc = fe_job_traverse(j, visit, arg);
        pthread_mutex_unlock(&ch->mu);
        if (rc)
            return rc;
    }
    return 0;
}

static int
channel_clear(fe_channel *ch)
{
    free_list(channel_take(ch));
    Py_CLEAR(ch->loop_ref);
    return 0;
}

static void
channel_dealloc(fe_channel *ch)
{
    PyTypeObject *tp = Py_TYPE(ch);
    PyObject_GC_UnTrack(ch);
    channel_clear(ch);
    Py_CLEAR(ch->module);
    pthread_mutex_destroy(&ch->mu);
    tp->tp_free((PyObject *)ch);
    Py_DECREF(tp);
}

static PyType_Slot channel_slots[] = {
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

struct fe_channel *
fe_channel_for_loop(fe_state *st, PyObject *loop)
{
    /* The dict is keyed by a weakref to the loop whose callback removes the
     * entry; looking it up with the loop's plain weakref compares equal
     * while the loop lives (as WeakKeyDictionary does). */
    PyObject *probe = PyWeakref_NewRef(loop, NULL);
    if (probe == NULL) {
        /* A loop that can't be weakly referenced gets a channel per call:
         * correct, only without coalescing. */
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear();
        return channel_new(st);
    }
    PyObject *found = PyDict_GetItemWithError(st->channels, probe);
    if (found != NULL) {
        Py_DECREF(probe);
        return (fe_channel *)Py_NewRef(found);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(probe);
        return NULL;
    }
    fe_channel *ch = channel_new(st);
    if (ch == NULL) {
        Py_DECREF(probe);
        return NULL;
    }
    ch->loop_ref = probe;   /* owned by the channel now */
    PyObject *key = PyWeakref_NewRef(loop, st->channels_pop);
    if (key == NULL || PyDict_SetItem(st->channels, key, (PyObject *)ch) < 0) {
        Py_XDECREF(key);
        Py_DECREF(ch);
        return NULL;
    }
    Py_DECREF(key);
    return ch;
}

/* --------------------------------------------------------------- wakeup */

/* Resolve one finished job's asyncio future on the loop's thread. */
static void
resolve_job(fe_state *st, fe_job *job)
{
    PyObject *fut = job->future, *r;
    if (job->outcome == OUT_CANCEL) {
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
    if (job->outcome == OUT_RESULT) {
        r = PyObject_CallMethodOneArg(fut, st->s_set_result, job->value);
    }
    else {
        PyObject *exc = job->value;
        if (PyErr_GivenExceptionMatches(exc, PyExc_StopIteration)) {
            /* asyncio futures refuse StopIteration (the stdlib bridge then
             * leaves the awaiting task hanging); deliver what a coroutine
             * would: a RuntimeError caused by it. */
            PyObject *rt = PyObject_CallFunction(
                PyExc_RuntimeError, "s", "StopIteration raised in an executor job");
            if (rt == NULL) {
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
    fe_job *list = channel_take(ch);
    while (list != NULL) {
        fe_job *job = list;
        list = job->next;
        job->next = NULL;
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
        free_list(channel_take(w->chan));
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

void
fe_channel_post(fe_state *st, fe_job *job)
{
    fe_channel *ch = job->chan;
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

    if (need_wakeup) {
        fe_wakeup *w = PyObject_GC_New(fe_wakeup, st->Wakeup_Type);
        if (w == NULL) {
            PyErr_WriteUnraisable(loop);
            free_list(channel_take(ch));
        }
        else {
            w->chan = (fe_channel *)Py_NewRef((PyObject *)ch);
            w->fired = 0;
            PyObject_GC_Track(w);
            PyObject *r = PyObject_CallMethodOneArg(loop, st->s_call_soon_threadsafe,
                                                    (PyObject *)w);
            if (r == NULL) {
                /* A closed loop refuses (RuntimeError): drop quietly.
                 * Anything else is a real problem: report it. */
                int closed = 0;
                PyObject *exc = fe_fetch_exception();
                PyObject *c = PyObject_CallMethodNoArgs(loop, st->s_is_closed);
                if (c != NULL)
                    closed = PyObject_IsTrue(c) == 1;
                else
                    PyErr_Clear();
                Py_XDECREF(c);
                if (!closed) {
                    fe_raise(exc);
                    PyErr_WriteUnraisable(loop);
                }
                Py_DECREF(exc);
            }
            Py_XDECREF(r);
            Py_DECREF(w);   /* if it was not scheduled, this drops the outbox */
        }
    }
    Py_DECREF(loop);
    Py_DECREF(ch);
}

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

/* The concurrent future is done: post its state to the loop. */
static int
relay_source_done(fe_relay *r, PyObject *cf)
{
    fe_state *st = r->st;
    fe_job *job = fe_job_new();
    if (job == NULL)
        return -1;
    job->kind = JOB_ASYNC;
    PyObject *c = PyObject_CallMethodNoArgs(cf, st->s_cancelled);
    if (c == NULL)
        goto error;
    int cancelled = (c == Py_True);
    Py_DECREF(c);
    if (cancelled)
        job->outcome = OUT_CANCEL;
    else {
        PyObject *exc = PyObject_CallMethodNoArgs(cf, st->s_exception);
        if (exc == NULL)
            goto error;
        if (exc != Py_None) {
            PyObject *conv = PyObject_CallOneArg(st->convert_future_exc, exc);
            Py_DECREF(exc);
            if (conv == NULL)
                goto error;
            job->outcome = OUT_EXCEPTION;
            job->value = conv;
        }
        else {
            Py_DECREF(exc);
            job->value = PyObject_CallMethodNoArgs(cf, st->s_result);
            if (job->value == NULL)
                goto error;
            job->outcome = OUT_RESULT;
        }
    }
    job->future = Py_NewRef(r->afut);
    job->loop = Py_NewRef(r->loop);
    job->chan = (fe_channel *)Py_NewRef((PyObject *)r->chan);
    fe_channel_post(st, job);
    return 0;
error:
    fe_job_free(job);
    return -1;
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
        if (r->cf == NULL)
            Py_RETURN_NONE;
        PyObject *c = PyObject_CallMethodNoArgs(r->afut, r->st->s_cancelled);
        if (c == NULL)
            return NULL;
        int cancelled = (c == Py_True);
        Py_DECREF(c);
        if (cancelled) {
            PyObject *cf = r->cf;
            r->cf = NULL;
            PyObject *res = PyObject_CallMethodNoArgs(cf, r->st->s_cancel);
            Py_DECREF(cf);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
        }
        Py_RETURN_NONE;
    }
    /* The concurrent future is done (in whichever thread completed it). */
    PyObject *cf = r->cf;
    if (cf == NULL)
        cf = fut;
    Py_INCREF(cf);
    Py_CLEAR(r->cf);
    int rc = relay_source_done(r, cf);
    Py_DECREF(cf);
    if (rc < 0)
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
    r->chan = fe_channel_for_loop(st, loop);
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

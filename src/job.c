/* fastexec job: allocation, release, GC traversal and the call itself.
 * See job.h. */
#include "job.h"

fe_job *
fe_job_new(const fe_sink *sink)
{
    FE_ASSERT_GIL();
    fe_job *job = PyMem_Calloc(1, sizeof(fe_job));
    if (job == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    job->sink = sink;
    return job;
}

void
fe_job_free(fe_job *job)
{
    FE_ASSERT_GIL();
    if (job->sink->release != NULL)
        job->sink->release(job);
    Py_XDECREF(job->fn);
    Py_XDECREF(job->args);
    Py_XDECREF(job->kwargs);
    Py_XDECREF(job->ctx);
    Py_XDECREF(job->future);
    Py_XDECREF(job->loop);
    Py_XDECREF(job->chan);
    Py_XDECREF(job->value);
    PyMem_Free(job);
}

int
fe_job_traverse(fe_job *job, visitproc visit, void *arg)
{
    Py_VISIT(job->fn);
    Py_VISIT(job->args);
    Py_VISIT(job->kwargs);
    Py_VISIT(job->ctx);
    Py_VISIT(job->future);
    Py_VISIT(job->loop);
    Py_VISIT(job->chan);
    Py_VISIT(job->value);
    return 0;
}

PyObject *
fe_job_call(fe_job *job)
{
    FE_ASSERT_GIL();
    PyObject *res;
    if (job->ctx != NULL) {
        if (PyContext_Enter(job->ctx) < 0)
            return NULL;
    }
    res = PyObject_Call(job->fn, job->args, job->kwargs);
    if (job->ctx != NULL) {
        PyObject *exc = res == NULL ? fe_fetch_exception() : NULL;
        if (PyContext_Exit(job->ctx) < 0) {
            /* Only fails if the context was not entered: cannot happen. */
            PyErr_WriteUnraisable(job->ctx);
        }
        if (exc != NULL) {
            fe_raise(exc);
            Py_DECREF(exc);
        }
    }
    return res;
}

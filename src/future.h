/* fastexec future: our concurrent.futures.Future (hot paths in C), and the
 * sink of submit()'s jobs, which settles it.
 */
#ifndef FASTEXEC_FUTURE_H
#define FASTEXEC_FUTURE_H

#include "job.h"

/* The sink of a job whose outcome settles job->future, one of our Futures. */
extern const fe_sink fe_future_sink;

int fe_future_init_type(PyObject *module, fe_state *st);
/* A new, pending Future. */
PyObject *fe_future_new(fe_state *st);
/* Nothing but the future itself is involved in settling it: no Condition,
 * no waiters, no callbacks. */
int fe_future_lock_free(PyObject *self);
int fe_future_set_running(PyObject *self);        /* 1, 0 (cancelled), -1 */
int fe_future_set_result(PyObject *self, PyObject *value);
int fe_future_set_exception(PyObject *self, PyObject *exc);

#endif /* FASTEXEC_FUTURE_H */

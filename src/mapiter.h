/* fastexec mapiter: map()'s batch of calls, its sink, and the iterator
 * that yields their results in order.
 */
#ifndef FASTEXEC_MAPITER_H
#define FASTEXEC_MAPITER_H

#include "job.h"

typedef struct fe_mapbatch fe_mapbatch;

int fe_mapiter_init_type(PyObject *module, fe_state *st);
/* A new, empty batch (refcount 1), or NULL with an exception. */
fe_mapbatch *fe_batch_new(void);
void fe_batch_decref(fe_mapbatch *b);
/* A job that calls fn(*args) for the batch's next slot (steals `args`,
 * released on error too), or NULL with an exception. */
fe_job *fe_batch_job(fe_mapbatch *b, PyObject *fn, PyObject *args);
/* The iterator over the batch's results (takes the caller's reference to
 * `b`, which is abandoned and released on error).  deadline: monotonic,
 * < 0 for none. */
PyObject *fe_mapiter_new(fe_state *st, fe_mapbatch *b, double deadline);

#endif /* FASTEXEC_MAPITER_H */

/* fastexec bridge: finished jobs travel to their asyncio event loop through
 * the loop's channel; wrap_future relays a concurrent future's outcome the
 * same way.
 */
#ifndef FASTEXEC_BRIDGE_H
#define FASTEXEC_BRIDGE_H

#include "job.h"

/* The sink of a job whose outcome goes to an asyncio future (job->future)
 * of job->loop, through its channel (job->chan). */
extern const fe_sink fe_async_sink;

int fe_bridge_init_types(PyObject *module, fe_state *st);
/* The channel of `loop`, created on first use; a new reference. */
PyObject *fe_channel_for_loop(fe_state *st, PyObject *loop);
/* wrap_future(cf_future, loop): the asyncio future that gets its outcome. */
PyObject *fe_wrap_future(fe_state *st, PyObject *cf_future, PyObject *loop);

#endif /* FASTEXEC_BRIDGE_H */

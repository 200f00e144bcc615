/* fastexec fork: the process-wide registry of live cores, the
 * pthread_atfork handlers that keep their queues whole across fork(), and
 * the settling, in the child, of the work inherited from the parent.
 */
#ifndef FASTEXEC_FORK_H
#define FASTEXEC_FORK_H

#include "fastexec.h"

struct fe_core;

/* Put a new core on the registry (installs the handlers once). */
int fe_fork_register(struct fe_core *c);
void fe_fork_unregister(struct fe_core *c);
/* Every set-up core of `st`'s module on the registry: a new list. */
PyObject *fe_fork_live_cores(fe_state *st);
/* core._after_fork_child(): in the child, end the inherited work. */
void fe_fork_after_child(struct fe_core *c);

#endif /* FASTEXEC_FORK_H */

/* fastexec pool: the Pool type (the C base of
 * fastexec.ThreadPoolExecutor). */
#ifndef FASTEXEC_POOL_H
#define FASTEXEC_POOL_H

#include "fastexec.h"

int fe_pool_init_type(PyObject *module, fe_state *st);

#endif /* FASTEXEC_POOL_H */

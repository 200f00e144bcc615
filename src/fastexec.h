/* fastexec: what every C file of the extension shares: the lock rules, the
 * version shims (compat.h), the module state (state.h), clocks and mutexes
 * (sync.h).  Each concern has its own .c/.h pair; the dependencies run one
 * way:
 *
 *   _fastexec.c  the module: state, init, module functions
 *   pool.c       the Pool type (executor methods: submit, map, run)
 *     core.c     the engine: queue, idle stack, spawn, worker loop, shutdown
 *       spin.c   spinning and the GIL hand-off (no Python)
 *       fork.c   fork handlers and the registry of live cores
 *     mapiter.c  map()'s batch, its sink and the iterator
 *     future.c   our concurrent.futures.Future and its sink
 *     bridge.c   the asyncio channel, its sink and wrap_future's relay
 *   job.c        a job: a call, and the sink its outcome goes to
 *
 * Locking rules (they are what keeps the pool free of deadlocks):
 *   1. A thread may take a core, batch or channel mutex while it holds the
 *      GIL.
 *   2. A thread never waits for the GIL while it holds one of our mutexes.
 *      (So a worker waiting for work holds its mutex inside pthread_cond_wait
 *      only, with the GIL released, and re-acquires the GIL after unlocking.)
 *   3. Our mutexes are leaves: no code holds two of them at once, with one
 *      exception: fork_prepare (fork.c, inside fork(), running no Python
 *      code) takes the registry mutex, then every registered core's mutex,
 *      and holds them all until fork_parent / fork_child.  Nothing takes the
 *      registry mutex while holding a core mutex, and nothing but
 *      fork_prepare holds two core mutexes, so the order is always registry
 *      first: no cycle.
 *   4. Python objects are touched only with the GIL (an attached thread
 *      state).  Functions whose contract says "GIL held" assert it with
 *      FE_ASSERT_GIL(), those that say "mu held" with FE_ASSERT_HELD(), in
 *      builds with assertions (FASTEXEC_DEBUG=1, or a Py_DEBUG Python).
 */
#ifndef FASTEXEC_H
#define FASTEXEC_H

#include "compat.h"
#include "state.h"
#include "sync.h"

#include <stdint.h>

#endif /* FASTEXEC_H */

/* fastexec spin: a worker that polls for the next job instead of sleeping,
 * and the GIL hand-off of a job caught that way.  Plain C, no Python: it
 * runs without the GIL.  See spin.c for why and how it adapts.
 */
#ifndef FASTEXEC_SPIN_H
#define FASTEXEC_SPIN_H

#include <sys/types.h>

/* The learning state of one pool.  budget, empty_since and gap_avg are
 * guarded by the pool's mutex; gil_lag_ns is atomic; gil_fast_count is
 * updated with the GIL held. */
typedef struct {
    double budget;                /* seconds a worker spins; adapts */
    double empty_since;           /* when a worker found the queue empty;
                                     0 once the next job came */
    double gap_avg;               /* moving average of those gaps */
    int gil_lag_ns;               /* how long a spinner that caught a job
                                     waits before taking the GIL (atomic) */
    int gil_fast_count;           /* GIL hand-offs without sleep in a row */
    int off;                      /* idle periods to sleep through without
                                     spinning (atomic): see spin.c */
} fe_spin;

void fe_spin_init(fe_spin *s);
/* A worker found the queue empty (mu held): note when, once. */
void fe_spin_queue_empty(fe_spin *s);
/* A job arrives (mu held): if the queue was empty, learn the gap. */
void fe_spin_job_arrives(fe_spin *s);
/* Whether a worker that found the queue empty should spin (mu held; one
 * call per idle period). */
int fe_spin_wanted(fe_spin *s);
/* Spin for up to the budget until *nqueued > 0 (read atomically).  1 if a
 * job came.  No lock, no GIL. */
int fe_spin_wait(fe_spin *s, const ssize_t *nqueued);
/* A spinner caught a job: wait the learnt lag before asking for the GIL. */
void fe_spin_gil_lag_wait(fe_spin *s);
/* The GIL took `took` seconds to come: learn from it (GIL held). */
void fe_spin_gil_learn(fe_spin *s, double took);

#endif /* FASTEXEC_SPIN_H */

/* fastexec spin: spinning and the GIL hand-off (no Python here).
 *
 * Spinning: a worker that just finished a job often gets the next one a few
 * tens of microseconds later (a sequential round trip: the loop wakes, reads
 * the result, submits again).  Sleeping on the condition variable would cost
 * a futex wake-up and a cross-core reschedule (30-45 us measured here) each
 * time, so one worker at a time (never all: on 2 cores that slows everybody)
 * polls the queue, without the GIL, for up to the budget before it sleeps.
 *
 * The budget follows the pool's rhythm: each time a job arrives at an empty
 * queue, the time since a worker found it empty (the gap) feeds a moving
 * average, and the spin covers that average with a margin while it is below
 * SPIN_MAX; work that comes more rarely gets SPIN_MIN, and an idle pool
 * burns no CPU.  (Adapting on the spin's own success instead collapsed for
 * good after a few misses: a budget that never catches never grows.)
 *
 * The GIL hand-off.  A job caught by spinning was just queued by a thread
 * that still holds the GIL (an event loop on its way back to its selector,
 * which is where it lets the GIL go).  Asking for the GIL at once would put
 * the spinner to sleep on the GIL's condition variable and cost a second
 * wake-up (measured: one per round trip, ~40 us).  So the spinner first
 * waits gil_lag_ns more, still spinning, and then learns from how long the
 * GIL took: a wait that slept means the lag was too short (+2 us); sixteen
 * that didn't let it shrink a little (-0.25 us).  Measured on a sequential
 * round trip: the lag settles at 1-2 us and under 1% of the waits sleep
 * (shrinking after every success instead: ~10% slept, each costing the
 * ~40 us the lag is there to save).
 *
 * When not to spin.  A spin pays only if a core is free for it.  Measured
 * on a loaded 2-core VM (other processes running, load average ~8):
 *  - The spinner is preempted while it spins (it counts its involuntary
 *    context switches): the cores are oversubscribed, and the spin takes the
 *    CPU the loop needs to produce the next job.  The four-hop HTTP app with
 *    one connection spent ~450 us of CPU per request with spinning, ~260-320
 *    without.  The workers then sleep through SPIN_OFF_PREEMPTED idle
 *    periods before one tries again.
 *  (A second gate, "the GIL took more than 20 us to come after a catch: the
 *  loop is busy, stop spinning for 64 idle periods", was tried and taken
 *  out: on an idle machine the loop often takes that long to let the GIL go
 *  after a submit, so the gate kept spinning off where it pays most.
 *  Measured, Python 3.13, idle 2-core VM, sequential no-op round trip,
 *  5 rounds x 2 runs: 44-53 us/call with the gate, 35 us without (stdlib
 *  80-89 us); the HTTP app at 32 connections moved within its noise,
 *  7.6k vs 7.9k req/s.)
 * An idle pool never spins: the budget falls to SPIN_MIN.
 *
 * The loop's half (tried, not kept).  The other wake-up of a round trip is
 * the loop's, out of epoll_wait, when the outcome's wakeup byte arrives.  A
 * selector that, with jobs of its own in flight, polled the channel without
 * the GIL for a moment before sleeping (gated off after a miss or a
 * preemption) took the idle sequential round trip from 33-34 to 15-18 us
 * (Python 3.13, stdlib 80-100), but the four-hop HTTP app lost by it: one
 * connection 3.33k -> 2.85k req/s with a 40 us budget, 3.39k -> 3.19k with
 * 12 us; 32 connections 8.97k -> 8.01k; CPU per call at 500 calls/s 67-69
 * -> 84-108 us.  There the loop, the worker and the HTTP client share two
 * cores, and a spinning loop takes the CPU one of them needed.  (Measured
 * on 2026-12-04 with a prototype that was not merged; these figures are its
 * record.)
 *
 * A free-core gate (tried, not kept).  Spinning only while the machine ran
 * no more threads than it has cores (/proc/loadavg's count of runnable
 * threads, read at most once a millisecond) left the idle round trip as it
 * was (27-34 us/call, Python 3.11/3.14/3.15) and beside one CPU-bound
 * process took 13.5-15.8 us instead of 14.4-16.5, within that load's noise.
 * Beside two, it did not remove the slow rounds it was meant for (rounds
 * of 60-122 us among rounds of 13-15 us, Python 3.15): a build that never
 * spins has them too, so they come from where the scheduler puts the loop
 * and the worker, not from the spin.  (2026-12-05, measured with a
 * prototype that was not merged.)
 */
/* No Python.h here, which would ask for POSIX 2008 itself; _GNU_SOURCE
 * for RUSAGE_THREAD. */
#define _POSIX_C_SOURCE 200809L
#define _GNU_SOURCE
#include <sys/resource.h>

#include "spin.h"
#include "sync.h"

#define SPIN_MAX 150e-6
#define SPIN_MIN 2e-6

#define GIL_LAG_MAX_NS 40000
#define GIL_LAG_UP_NS 2000
#define GIL_LAG_DOWN_NS 250
#define GIL_LAG_DOWN_EVERY 16
#define GIL_SLEPT 8e-6

#define SPIN_OFF_PREEMPTED 256

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void
fe_spin_init(fe_spin *s)
{
    s->budget = SPIN_MAX;
    s->empty_since = 0;
    s->gap_avg = 0;
    s->gil_lag_ns = 0;
    s->gil_fast_count = 0;
    s->off = 0;
}

void
fe_spin_queue_empty(fe_spin *s)
{
    if (s->empty_since == 0)
        s->empty_since = fe_monotonic();
}

void
fe_spin_job_arrives(fe_spin *s)
{
    if (s->empty_since <= 0)
        return;
    double gap = fe_monotonic() - s->empty_since;
    s->empty_since = 0;
    if (gap > 10 * SPIN_MAX)
        gap = 10 * SPIN_MAX;    /* one long pause weighs like a few */
    s->gap_avg = s->gap_avg > 0 ? 0.75 * s->gap_avg + 0.25 * gap : gap;
    double budget = 1.5 * s->gap_avg + 5e-6;
    s->budget = s->gap_avg > SPIN_MAX ? SPIN_MIN
                : budget > SPIN_MAX ? SPIN_MAX : budget;
}

int
fe_spin_wanted(fe_spin *s)
{
    int off = __atomic_load_n(&s->off, __ATOMIC_RELAXED);
    if (off > 0) {
        __atomic_store_n(&s->off, off - 1, __ATOMIC_RELAXED);
        return 0;
    }
    return s->budget > 0;
}

/* The calling thread's involuntary context switches so far, or -1. */
static long
involuntary_switches(void)
{
#ifdef RUSAGE_THREAD
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0)
        return ru.ru_nivcsw;
#endif
    return -1;
}

int
fe_spin_wait(fe_spin *s, const ssize_t *nqueued)
{
    long before = involuntary_switches();
    double end = fe_monotonic() + s->budget;
    int caught = 0;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (__atomic_load_n(nqueued, __ATOMIC_RELAXED) > 0) {
                caught = 1;
                goto out;
            }
            cpu_relax();
        }
        if (fe_monotonic() >= end)
            break;
    }
out:
    if (before >= 0 && involuntary_switches() != before)
        __atomic_store_n(&s->off, SPIN_OFF_PREEMPTED, __ATOMIC_RELAXED);
    return caught;
}

void
fe_spin_gil_lag_wait(fe_spin *s)
{
    int lag = __atomic_load_n(&s->gil_lag_ns, __ATOMIC_RELAXED);
    if (lag <= 0)
        return;
    double end = fe_monotonic() + lag * 1e-9;
    while (fe_monotonic() < end) {
        for (int i = 0; i < 16; i++)
            cpu_relax();
    }
}

void
fe_spin_gil_learn(fe_spin *s, double took)
{
    int lag = __atomic_load_n(&s->gil_lag_ns, __ATOMIC_RELAXED);
    if (took > GIL_SLEPT) {
        lag += GIL_LAG_UP_NS;
        if (lag > GIL_LAG_MAX_NS)
            lag = GIL_LAG_MAX_NS;
        s->gil_fast_count = 0;
    }
    else if (++s->gil_fast_count >= GIL_LAG_DOWN_EVERY) {
        s->gil_fast_count = 0;
        lag = lag > GIL_LAG_DOWN_NS ? lag - GIL_LAG_DOWN_NS : 0;
    }
    __atomic_store_n(&s->gil_lag_ns, lag, __ATOMIC_RELAXED);
}

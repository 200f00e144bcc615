/* fastexec sync: clocks, condition variables, and a mutex that knows its
 * holder.  Plain C and pthreads, no Python (spin.c uses it without the GIL).
 */
#ifndef FASTEXEC_SYNC_H
#define FASTEXEC_SYNC_H

#include <assert.h>
#include <pthread.h>
#include <time.h>

/* Absolute CLOCK_MONOTONIC deadline `seconds` from now. */
static inline struct timespec
fe_deadline(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (seconds > 1e9)
        seconds = 1e9;
    double whole = (double)(time_t)seconds;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static inline double
fe_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A condition variable that measures time on CLOCK_MONOTONIC. */
static inline int
fe_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

/* A mutex that, in builds with assertions, records which thread holds it,
 * so that "mu held" in a function's contract is asserted: FE_ASSERT_HELD. */
typedef struct {
    pthread_mutex_t mu;
#ifndef NDEBUG
    pthread_t owner;
    int held;
#endif
} fe_mutex;

#ifndef NDEBUG
#define FE_MUTEX_TAKEN(m) ((m)->owner = pthread_self(), (m)->held = 1)
#define FE_MUTEX_GIVEN(m) (assert((m)->held && pthread_equal((m)->owner, pthread_self())), \
                           (m)->held = 0)
#define FE_ASSERT_HELD(m) assert((m)->held && pthread_equal((m)->owner, pthread_self()))
#else
#define FE_MUTEX_TAKEN(m) ((void)0)
#define FE_MUTEX_GIVEN(m) ((void)0)
#define FE_ASSERT_HELD(m) ((void)0)
#endif

static inline int
fe_mutex_init(fe_mutex *m)
{
#ifndef NDEBUG
    m->held = 0;
#endif
    return pthread_mutex_init(&m->mu, NULL) == 0 ? 0 : -1;
}

static inline void
fe_mutex_destroy(fe_mutex *m)
{
    pthread_mutex_destroy(&m->mu);
}

static inline void
fe_mutex_lock(fe_mutex *m)
{
    pthread_mutex_lock(&m->mu);
    FE_MUTEX_TAKEN(m);
}

static inline void
fe_mutex_unlock(fe_mutex *m)
{
    FE_MUTEX_GIVEN(m);
    pthread_mutex_unlock(&m->mu);
}

static inline int
fe_mutex_wait(pthread_cond_t *cv, fe_mutex *m)
{
    FE_MUTEX_GIVEN(m);
    int rc = pthread_cond_wait(cv, &m->mu);
    FE_MUTEX_TAKEN(m);
    return rc;
}

static inline int
fe_mutex_timedwait(pthread_cond_t *cv, fe_mutex *m, const struct timespec *ts)
{
    FE_MUTEX_GIVEN(m);
    int rc = pthread_cond_timedwait(cv, &m->mu, ts);
    FE_MUTEX_TAKEN(m);
    return rc;
}

#endif /* FASTEXEC_SYNC_H */

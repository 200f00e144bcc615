"""The micro-benchmarks: one kind of call, many times, in one process.

Method, kept the same for every contender:

* one event loop and one pool per contender per workload, created before the
  workload's first round and closed after its last; every asyncio round is
  one ``loop.run_until_complete`` on that loop;
* stdlib and fastexec pools get the same ``max_workers`` (the stdlib default,
  ``min(32, cpu + 4)``, unless the workload says otherwise);
* before each round, untimed: ``gc.collect()`` and, inside the round, one
  call per worker of a 1 ms sleep so that every contender has its threads
  running (anyio's worker threads belong to the loop's root task, which is
  one ``run_until_complete``, so they are restarted every round);
* ``time.perf_counter`` around the measured part only; gc stays enabled.
"""

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import itertools
import os
import threading
import time
import tracemalloc

from .runner import Workload

perf_counter = time.perf_counter


# --------------------------------------------------------------------------
# What the workers run.

def _noop(*_args):
    return None


def _identity(x):
    return x


def _sha256(buf):
    return hashlib.sha256(buf).digest()


def _block(event):
    event.wait()


def _resolve_all(futures):
    # A loop in C (no bytecode per future), as the fast path's delivery is:
    # a Python for loop here made the limit slower than the fast path.
    collections.deque(map(asyncio.Future.set_result, futures,
                          itertools.repeat(None)), maxlen=0)


# --------------------------------------------------------------------------
# Contenders.  A contender opens a Session for a workload: the event loop, the
# pool(s) and ``call(fn, *args)``, which returns an awaitable.

class Session:
    """One contender's loop and pools for one workload (all of its rounds)."""

    def __init__(self, name, max_workers, loop=None, pools=(), call=None):
        self.name = name
        self.max_workers = max_workers
        self.loop = loop
        self.pools = list(pools)
        self.pool = self.pools[0] if self.pools else None
        self.call = call

    def run(self, coroutine_function):
        """One round: run ``coroutine_function(self)`` to completion."""
        return self.loop.run_until_complete(coroutine_function(self))

    async def prime(self):
        """Untimed: get every worker thread running (one 1 ms sleep each)."""
        if self.call is not None:
            await asyncio.gather(*[self.call(time.sleep, 0.001)
                                   for _ in range(self.max_workers)])

    def close(self):
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                # Closing a loop shuts its default executor down (no wait).
                self.loop.close()
        for pool in self.pools:
            pool.shutdown(wait=True)


def _stdlib_pool(env, max_workers):
    return concurrent.futures.ThreadPoolExecutor(max_workers)


def _fastexec_pool(env, max_workers):
    return env.fastexec.ThreadPoolExecutor(max_workers)


def _asyncio_loop(env):
    return asyncio.new_event_loop()


def _uvloop_loop(env):
    return env.uvloop.new_event_loop()


def _default_executor_session(new_loop, new_pool, use_to_thread=False):
    """``loop.set_default_executor(pool)``; calls go to the default executor."""
    def open_session(env, name, max_workers):
        loop = new_loop(env)
        pool = new_pool(env, max_workers)
        loop.set_default_executor(pool)
        if use_to_thread:
            call = asyncio.to_thread
        else:
            call = functools.partial(loop.run_in_executor, None)
        return Session(name, max_workers, loop, [pool], call)
    return open_session


def _fast_path_session(new_loop):
    """``pool.run(fn, *args)`` on a fastexec pool (not the default executor)."""
    def open_session(env, name, max_workers):
        loop = new_loop(env)
        pool = _fastexec_pool(env, max_workers)
        return Session(name, max_workers, loop, [pool], pool.run)
    return open_session


def _anyio_session(env, name, max_workers):
    """``anyio.to_thread.run_sync`` on the asyncio backend, its limiter sized
    like the pools."""
    loop = asyncio.new_event_loop()

    async def new_limiter():
        return env.anyio.CapacityLimiter(max_workers)

    limiter = loop.run_until_complete(new_limiter())
    call = functools.partial(env.anyio.to_thread.run_sync, limiter=limiter)
    return Session(name, max_workers, loop, [], call)


def _bare_loop_session(env, name, max_workers):
    """An asyncio loop and no thread at all (the references)."""
    return Session(name, max_workers, asyncio.new_event_loop())


def _pool_only_session(new_pool):
    """A pool and no event loop (the concurrent.futures workloads)."""
    def open_session(env, name, max_workers):
        pool = new_pool(env, max_workers)
        return Session(name, max_workers, pools=[pool])
    return open_session


class Contender:
    def __init__(self, name, requires, open_session, description):
        self.name = name
        self.requires = requires
        self.open_session = open_session
        self.description = description


CONTENDERS = {c.name: c for c in [
    Contender("stdlib", (), _default_executor_session(_asyncio_loop, _stdlib_pool),
              "loop.run_in_executor(None, f), stdlib ThreadPoolExecutor as "
              "the default executor"),
    Contender("to_thread", (),
              _default_executor_session(_asyncio_loop, _stdlib_pool, True),
              "asyncio.to_thread(f), stdlib default executor"),
    Contender("drop-in", ("fastexec",),
              _default_executor_session(_asyncio_loop, _fastexec_pool),
              "loop.set_default_executor(fastexec.ThreadPoolExecutor()) only; "
              "still loop.run_in_executor(None, f)"),
    Contender("fast path", ("fastexec",), _fast_path_session(_asyncio_loop),
              "pool.run(f), pool a fastexec.ThreadPoolExecutor"),
    Contender("uvloop stdlib", ("uvloop",),
              _default_executor_session(_uvloop_loop, _stdlib_pool),
              "uvloop loop, loop.run_in_executor(None, f), stdlib pool"),
    Contender("uvloop fast path", ("uvloop", "fastexec"),
              _fast_path_session(_uvloop_loop), "uvloop loop, pool.run(f)"),
    Contender("anyio", ("anyio",), _anyio_session,
              "anyio.to_thread.run_sync(f) on the asyncio backend"),
    Contender("limit (no thread)", (), _bare_loop_session,
              "asyncio futures only: create_future, then set_result on all "
              "of them from one loop callback, in a C loop, gather"),
    Contender("serial (no pool)", (), _bare_loop_session,
              "the same jobs one after the other in the main thread"),
    Contender("bare threads", (), _bare_loop_session,
              "the same sleeps split over as many plain threading.Threads as "
              "the pool has workers: no pool, no loop (the machine's floor)"),
    Contender("stdlib pool", (), _pool_only_session(_stdlib_pool),
              "concurrent.futures.ThreadPoolExecutor"),
    Contender("fastexec pool", ("fastexec",), _pool_only_session(_fastexec_pool),
              "fastexec.ThreadPoolExecutor"),
]}

ASYNC_CONTENDERS = ["stdlib", "to_thread", "drop-in", "fast path",
                    "uvloop stdlib", "uvloop fast path", "anyio"]

# Reference rows: bounds to read the contenders against, not contenders.
REFERENCES = ("limit (no thread)", "serial (no pool)", "bare threads")


def _open_session(env, name, max_workers):
    return CONTENDERS[name].open_session(env, name, max_workers)


def _workload(key, title, unit, better, contenders, measure, full_size,
              quick_size, **options):
    """A micro workload: its sessions are CONTENDERS' sessions."""
    options.setdefault("baseline", "stdlib pool" if "stdlib pool" in contenders
                       else "stdlib")
    return Workload(key, title, unit, better, contenders, measure,
                    _open_session, full_size, quick_size,
                    references=tuple(c for c in contenders if c in REFERENCES),
                    requires={c: CONTENDERS[c].requires for c in contenders},
                    **options)


# --------------------------------------------------------------------------
# Workloads.  ``measure(session, size)`` runs one round and returns the figure.

async def _gathered_seconds(call, n, fn, *args):
    t0 = perf_counter()
    futures = [call(fn, *args) for _ in range(n)]
    await asyncio.gather(*futures)
    return perf_counter() - t0


async def _no_thread_seconds(n):
    loop = asyncio.get_running_loop()
    t0 = perf_counter()
    futures = [loop.create_future() for _ in range(n)]
    loop.call_soon(_resolve_all, futures)
    await asyncio.gather(*futures)
    return perf_counter() - t0


def measure_roundtrip(session, n):
    async def one_round(s):
        await s.prime()
        call = s.call
        t0 = perf_counter()
        for _ in range(n):
            await call(_noop)
        return (perf_counter() - t0) / n * 1e6
    return session.run(one_round)


def measure_gather_noop(session, n):
    async def one_round(s):
        if s.name == "limit (no thread)":
            return n / await _no_thread_seconds(n)
        await s.prime()
        return n / await _gathered_seconds(s.call, n, _noop)
    return session.run(one_round)


def measure_gather_stat(session, n, path):
    async def one_round(s):
        await s.prime()
        return n / await _gathered_seconds(s.call, n, os.stat, path)
    return session.run(one_round)


def _bare_threads_ms(n, nthreads, fn, *args):
    """n calls of fn(*args) spread over nthreads plain threads, started and
    lined up at a barrier before the clock starts."""
    barrier = threading.Barrier(nthreads + 1)
    counts = [n // nthreads + (i < n % nthreads) for i in range(nthreads)]

    def work(k):
        barrier.wait()
        for _ in range(k):
            fn(*args)
    threads = [threading.Thread(target=work, args=(k,)) for k in counts]
    for t in threads:
        t.start()
    t0 = perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return (perf_counter() - t0) * 1e3


def measure_sleep(session, n, seconds):
    if session.name == "bare threads":
        return _bare_threads_ms(n, session.max_workers, time.sleep, seconds)

    async def one_round(s):
        await s.prime()
        return await _gathered_seconds(s.call, n, time.sleep, seconds) * 1e3
    return session.run(one_round)


def measure_sha256(session, n, buf):
    if session.name == "serial (no pool)":
        t0 = perf_counter()
        for _ in range(n):
            _sha256(buf)
        return (perf_counter() - t0) * 1e3

    async def one_round(s):
        await s.prime()
        return await _gathered_seconds(s.call, n, _sha256, buf) * 1e3
    return session.run(one_round)


def measure_cf_submit(session, n):
    pool = session.pool
    t0 = perf_counter()
    futures = [pool.submit(_noop) for _ in range(n)]
    for future in futures:
        future.result()
    return n / (perf_counter() - t0)


def measure_cf_map(session, n):
    pool = session.pool
    t0 = perf_counter()
    results = list(pool.map(_identity, range(n)))
    seconds = perf_counter() - t0
    if results != list(range(n)):   # untimed: a fast wrong answer is no answer
        raise AssertionError("map returned wrong results")
    return n / seconds


def measure_memory(session, n):
    """Traced bytes per pending call: n calls queued behind blocked workers."""
    async def one_round(s):
        await s.prime()
        call = s.call
        event = threading.Event()
        futures = [None] * n          # allocated before tracing starts
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(n):
                futures[i] = call(_block, event)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            event.set()
            await asyncio.gather(*[f for f in futures if f is not None])
        return used / n
    return session.run(one_round)


async def _steady(call, rate, seconds):
    """Calls of a no-op at *rate* per second for *seconds*: every call that
    is due is made when the loop wakes, then the loop sleeps until the next
    one is due.  Returns the number of calls."""
    loop = asyncio.get_running_loop()
    n = max(1, int(rate * seconds))
    interval = 1.0 / rate
    pending = []
    start = loop.time()
    i = 0
    while i < n:
        now = loop.time()
        while i < n and start + i * interval <= now:
            pending.append(call(_noop))
            i += 1
        if i < n:
            await asyncio.sleep(start + i * interval - loop.time())
    await asyncio.gather(*pending)
    return n


def measure_steady_cpu(session, seconds, rate):
    """Process CPU time (every thread's) per call, in microseconds, at a
    steady *rate* of calls per second."""
    async def one_round(s):
        await s.prime()
        c0 = time.process_time()
        n = await _steady(s.call, rate, seconds)
        return (time.process_time() - c0) / n * 1e6
    return session.run(one_round)


def measure_idle_cpu(session, seconds):
    """Process CPU milliseconds per second while the pool is idle, right
    after a burst of work (its threads are alive)."""
    async def one_round(s):
        await s.prime()
        await asyncio.gather(*[s.call(_noop) for _ in range(1000)])
        c0 = time.process_time()
        await asyncio.sleep(seconds)
        return (time.process_time() - c0) / seconds * 1e3
    return session.run(one_round)


SLEEP_SECONDS = 0.001
STEADY_RATES = (500, 2000, 8000)
STEADY_CONTENDERS = ["stdlib", "drop-in", "fast path"]
SLEEP_WORKERS = 64
SHA_BUFFER = 1 << 20
MEMORY_WORKERS = 2


def make_workloads(stat_path, sha_buffer):
    cpus = os.cpu_count() or 1
    return [
        _workload("roundtrip", "round trip no-op", "us/call", "lower",
                 ASYNC_CONTENDERS, measure_roundtrip, 5000, 500,
                 description="sequential: await run(noop) in a loop"),
        _workload("gather-noop", "gathered no-op", "calls/s", "higher",
                 ASYNC_CONTENDERS + ["limit (no thread)"], measure_gather_noop,
                 20000, 2000,
                 description="create N calls of a no-op, then gather them; "
                             "the limit: N futures, no thread"),
        _workload("gather-stat", "gathered os.stat", "calls/s", "higher",
                 ASYNC_CONTENDERS,
                 functools.partial(measure_gather_stat, path=stat_path),
                 20000, 2000,
                 description="create N calls of os.stat of a cached file, then "
                             "gather them"),
        _workload("sleep", "sleep 1 ms", "ms", "lower",
                 ASYNC_CONTENDERS + ["bare threads"],
                 functools.partial(measure_sleep, seconds=SLEEP_SECONDS),
                 2000, 2000, max_workers=SLEEP_WORKERS,
                 ideal=ideal_sleep_ms,
                 description="N calls of time.sleep(0.001) gathered, %d "
                             "workers; ideal = N * 1 ms / %d"
                             % (SLEEP_WORKERS, SLEEP_WORKERS)),
        _workload("sha256", "sha256 1 MiB", "ms", "lower",
                 ASYNC_CONTENDERS + ["serial (no pool)"],
                 functools.partial(measure_sha256, buf=sha_buffer),
                 64, 64, max_workers=cpus,
                 description="N jobs hashlib.sha256 of 1 MiB (releases the "
                             "GIL) gathered, max_workers = os.cpu_count()"),
        _workload("cf-submit", "cf submit+result", "calls/s", "higher",
                 ["stdlib pool", "fastexec pool"], measure_cf_submit,
                 100000, 10000,
                 description="no asyncio: fs = [pool.submit(noop) ...N]; "
                             "f.result() for each"),
        _workload("cf-map", "cf map", "calls/s", "higher",
                 ["stdlib pool", "fastexec pool"], measure_cf_map,
                 100000, 10000,
                 description="no asyncio: list(pool.map(identity, range(N))), "
                             "results checked untimed"),
        _workload("memory", "memory per pending call", "B/call", "lower",
                 ["stdlib", "drop-in", "fast path"], measure_memory,
                 100000, 2000, max_workers=MEMORY_WORKERS, max_rounds=3,
                 description="tracemalloc delta / N for N calls queued behind "
                             "%d workers blocked on an Event; at most 3 rounds "
                             "(a byte count: it does not vary)"
                             % MEMORY_WORKERS),
    ] + [
        _workload("cpu-%d" % rate, "CPU per call at %d calls/s" % rate,
                  "us/call", "lower", STEADY_CONTENDERS,
                  functools.partial(measure_steady_cpu, rate=rate),
                  1.0, 0.3, size_text="seconds",
                  description="no-op calls at a steady %d per second for the "
                              "given seconds; process CPU time (all threads) "
                              "/ calls" % rate)
        for rate in STEADY_RATES
    ] + [
        _workload("idle", "CPU of an idle pool", "ms/s", "lower",
                  STEADY_CONTENDERS, measure_idle_cpu, 1.0, 0.3,
                  size_text="seconds",
                  description="process CPU ms per second while nothing is "
                              "called, right after 1,000 gathered calls"),
    ]


WORKLOAD_KEYS = ["roundtrip", "gather-noop", "gather-stat", "sleep", "sha256",
                 "cpu-500", "cpu-2000", "cpu-8000", "idle",
                 "cf-submit", "cf-map", "memory"]


def ideal_sleep_ms(n):
    return n * SLEEP_SECONDS / SLEEP_WORKERS * 1e3


def measure_one_sleep_ms(count=200):
    """What one time.sleep(SLEEP_SECONDS) really takes here, in ms: the
    kernel's timer slack and wake-up latency come on top of the request, so
    even a pool with no overhead at all can't reach the ideal."""
    t0 = perf_counter()
    for _ in range(count):
        time.sleep(SLEEP_SECONDS)
    return (perf_counter() - t0) / count * 1e3

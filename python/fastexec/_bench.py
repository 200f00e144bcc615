"""``python -m fastexec bench``: fastexec against the stdlib, in one process.

Every workload runs through every contender that applies to it, interleaved
(A B C A B C ...), one warm-up round first (recorded, not counted), and the
figure shown is the median of the counted rounds.

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

The module runs without the C extension (the fastexec contenders are then
skipped with a message), so it can also be run as a script.
"""

import argparse
import asyncio
import concurrent.futures
import datetime
import functools
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc

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
    for fut in futures:
        fut.set_result(None)


# --------------------------------------------------------------------------
# The environment: which optional contenders can run.

class _Env:
    """The optional modules, or why each is missing."""

    def __init__(self):
        self.fastexec = self.uvloop = self.anyio = None
        self.missing = {}
        self.notes = []
        try:
            import fastexec._fastexec  # noqa: F401  (the C extension)
            import fastexec
        except ImportError as exc:
            self.missing["fastexec"] = (
                "the C extension fastexec._fastexec does not import (%s); "
                "build it: pip install ." % exc)
        else:
            self.fastexec = fastexec
            if fastexec.installed():
                # The stdlib contenders must run the stdlib's code.
                fastexec.uninstall()
                self.notes.append("fastexec.install() was in effect: undone "
                                  "for the benchmark")
        try:
            import uvloop
        except ImportError:
            self.missing["uvloop"] = "uvloop is not installed: pip install uvloop"
        else:
            self.uvloop = uvloop
        try:
            import anyio
            import anyio.to_thread  # noqa: F401
        except ImportError:
            self.missing["anyio"] = "anyio is not installed: pip install anyio"
        else:
            self.anyio = anyio

    def versions(self):
        found = {}
        if self.fastexec is not None:
            found["fastexec"] = self.fastexec.__version__
        if self.uvloop is not None:
            found["uvloop"] = getattr(self.uvloop, "__version__", "?")
        if self.anyio is not None:
            found["anyio"] = _dist_version("anyio")
        return found

    def has(self, requires):
        return all(getattr(self, name) is not None for name in requires)


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
              "asyncio futures only: create_future, set_result from one loop "
              "callback, gather"),
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

# The contender every other is compared with, per workload.
BASELINES = ("stdlib", "stdlib pool")
# Reference rows: bounds to read the contenders against, not contenders.
REFERENCES = ("limit (no thread)", "serial (no pool)", "bare threads")


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


class Workload:
    def __init__(self, key, title, unit, better, contenders, measure,
                 full_size, quick_size, max_workers=None, max_rounds=None,
                 description=""):
        self.key = key
        self.title = title
        self.unit = unit
        self.better = better            # "higher" or "lower"
        self.contenders = contenders
        self.measure = measure          # measure(session, size) -> figure
        self.full_size = full_size
        self.quick_size = quick_size
        self.max_workers = max_workers  # None: the stdlib default
        self.max_rounds = max_rounds    # None: as many as asked for
        self.description = description

    def rounds_for(self, rounds):
        return min(rounds, self.max_rounds or rounds)


def _default_max_workers():
    return min(32, _process_cpu_count() + 4)


def _process_cpu_count():
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


SLEEP_SECONDS = 0.001
SLEEP_WORKERS = 64
SHA_BUFFER = 1 << 20
MEMORY_WORKERS = 2


def make_workloads(stat_path, sha_buffer):
    cpus = os.cpu_count() or 1
    return [
        Workload("roundtrip", "round trip no-op", "us/call", "lower",
                 ASYNC_CONTENDERS, measure_roundtrip, 5000, 500,
                 description="sequential: await run(noop) in a loop"),
        Workload("gather-noop", "gathered no-op", "calls/s", "higher",
                 ASYNC_CONTENDERS + ["limit (no thread)"], measure_gather_noop,
                 20000, 2000,
                 description="create N calls of a no-op, then gather them; "
                             "the limit: N futures, no thread"),
        Workload("gather-stat", "gathered os.stat", "calls/s", "higher",
                 ASYNC_CONTENDERS,
                 functools.partial(measure_gather_stat, path=stat_path),
                 20000, 2000,
                 description="create N calls of os.stat of a cached file, then "
                             "gather them"),
        Workload("sleep", "sleep 1 ms", "ms", "lower",
                 ASYNC_CONTENDERS + ["bare threads"],
                 functools.partial(measure_sleep, seconds=SLEEP_SECONDS),
                 2000, 2000, max_workers=SLEEP_WORKERS,
                 description="N calls of time.sleep(0.001) gathered, %d "
                             "workers; ideal = N * 1 ms / %d"
                             % (SLEEP_WORKERS, SLEEP_WORKERS)),
        Workload("sha256", "sha256 1 MiB", "ms", "lower",
                 ASYNC_CONTENDERS + ["serial (no pool)"],
                 functools.partial(measure_sha256, buf=sha_buffer),
                 64, 64, max_workers=cpus,
                 description="N jobs hashlib.sha256 of 1 MiB (releases the "
                             "GIL) gathered, max_workers = os.cpu_count()"),
        Workload("cf-submit", "cf submit+result", "calls/s", "higher",
                 ["stdlib pool", "fastexec pool"], measure_cf_submit,
                 100000, 10000,
                 description="no asyncio: fs = [pool.submit(noop) ...N]; "
                             "f.result() for each"),
        Workload("cf-map", "cf map", "calls/s", "higher",
                 ["stdlib pool", "fastexec pool"], measure_cf_map,
                 100000, 10000,
                 description="no asyncio: list(pool.map(identity, range(N))), "
                             "results checked untimed"),
        Workload("memory", "memory per pending call", "B/call", "lower",
                 ["stdlib", "drop-in", "fast path"], measure_memory,
                 100000, 2000, max_workers=MEMORY_WORKERS, max_rounds=3,
                 description="tracemalloc delta / N for N calls queued behind "
                             "%d workers blocked on an Event; at most 3 rounds "
                             "(a byte count: it does not vary)"
                             % MEMORY_WORKERS),
    ]


WORKLOAD_KEYS = ["roundtrip", "gather-noop", "gather-stat", "sleep", "sha256",
                 "cf-submit", "cf-map", "memory"]


# --------------------------------------------------------------------------
# Running.

class Result:
    """One contender's figures for one workload."""

    def __init__(self, workload, contender, size, max_workers):
        self.workload = workload
        self.contender = contender
        self.size = size
        self.max_workers = max_workers
        self.warmup = None
        self.rounds = []
        self.error = None

    @property
    def median(self):
        return statistics.median(self.rounds) if self.rounds else None

    @property
    def spread(self):
        """(max - min) / median of the counted rounds."""
        if len(self.rounds) < 2 or not self.median:
            return None
        return (max(self.rounds) - min(self.rounds)) / self.median


class Progress:
    """A single progress line on stderr (a line per step when not a tty)."""

    def __init__(self, total, enabled=True):
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()

    def step(self, text):
        self.done += 1
        if not self.enabled:
            return
        line = "[%d/%d] %s" % (self.done, self.total, text)
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish(self):
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def run_workload(env, workload, contenders, size, rounds, progress):
    rounds = workload.rounds_for(rounds)
    max_workers = workload.max_workers or _default_max_workers()
    results = [Result(workload, name, size, max_workers) for name in contenders]
    sessions = []
    try:
        for result in results:
            contender = CONTENDERS[result.contender]
            try:
                sessions.append(contender.open_session(env, contender.name,
                                                       max_workers))
            except Exception as exc:
                result.error = "could not start: %r" % (exc,)
                sessions.append(None)
        for round_no in range(rounds + 1):
            label = "warm-up" if round_no == 0 else "round %d" % round_no
            for result, session in zip(results, sessions):
                progress.step("%s / %s %s" % (workload.title, result.contender,
                                              label))
                if result.error is not None:
                    continue
                gc.collect()
                try:
                    figure = workload.measure(session, size)
                except Exception as exc:
                    result.error = "%s: %r" % (label, exc)
                    continue
                if round_no == 0:
                    result.warmup = figure
                else:
                    result.rounds.append(figure)
    finally:
        for result, session in zip(results, sessions):
            if session is not None:
                try:
                    session.close()
                except Exception as exc:
                    if result.error is None:
                        result.error = "on close: %r" % (exc,)
    return results


# --------------------------------------------------------------------------
# Ratios, notes and targets.

def _find(results, workload, contender):
    for r in results:
        if (r.workload.key == workload and r.contender == contender
                and r.median is not None):
            return r
    return None


def _baseline(results, result):
    for name in BASELINES:
        base = _find(results, result.workload.key, name)
        if base is not None:
            return base
    return None


def better_ratio(result, base):
    """How many times better than *base*: > 1 is better, whichever the unit."""
    if result.median is None or base is None or not base.median \
            or not result.median:
        return None
    if result.workload.better == "higher":
        return result.median / base.median
    return base.median / result.median


def raw_ratio(result, base):
    """The figure over the baseline's figure, as measured."""
    if result.median is None or base is None or not base.median:
        return None
    return result.median / base.median


def note(results, result):
    key = result.workload.key
    if result.median is None:
        return ""
    if key == "sleep":
        ideal = ideal_sleep_ms(result.size)
        return "%.2f%s ideal (%.2f ms)" % (result.median / ideal, X, ideal)
    if key == "sha256":
        serial = _find(results, key, "serial (no pool)")
        if serial is not None and result is not serial:
            return "%.2f%s speed-up vs serial" % (serial.median / result.median,
                                                  X)
    if key == "gather-noop":
        if result.contender == "limit (no thread)":
            return "upper bound: no thread, asyncio loop"
        limit = _find(results, key, "limit (no thread)")
        if limit is not None:
            return "%.0f%% of the limit" % (100 * result.median / limit.median)
    return ""


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


class Target:
    """A goal for the fast path, checked on the medians.

    ``measure(results)`` returns the measured value, or a string saying why it
    could not be measured; the target is met when value ``op`` threshold.
    """

    def __init__(self, text, measure, op, threshold, stretch=False):
        self.text = text
        self.measure = measure
        self.op = op
        self.threshold = threshold
        self.stretch = stretch

    def evaluate(self, results):
        value = self.measure(results)
        if isinstance(value, str):
            return "SKIP", None, value
        met = value >= self.threshold if self.op == ">=" \
            else value <= self.threshold
        return ("PASS" if met else "MISS"), value, "%.3f%s" % (value, X)


def _ratio_of(workload, ours, theirs, invert=False):
    """ours/theirs medians in *workload* (theirs/ours when invert)."""
    def measure(results):
        a = _find(results, workload, ours)
        b = _find(results, workload, theirs)
        if a is None or b is None:
            missing = [n for n, r in ((ours, a), (theirs, b)) if r is None]
            return "not measured: %s / %s" % (workload, ", ".join(missing))
        return b.median / a.median if invert else a.median / b.median
    return measure


def _sleep_to_ideal(results):
    r = _find(results, "sleep", "fast path")
    if r is None:
        return "not measured: sleep / fast path"
    return r.median / ideal_sleep_ms(r.size)


TARGETS = [
    Target("gathered no-op: fast path >= 12{x} stdlib calls/s",
           _ratio_of("gather-noop", "fast path", "stdlib"), ">=", 12),
    Target("round trip: fast path <= 0.45{x} stdlib {us}",
           _ratio_of("roundtrip", "fast path", "stdlib"), "<=", 0.45),
    Target("gathered os.stat: fast path >= 6{x} stdlib calls/s",
           _ratio_of("gather-stat", "fast path", "stdlib"), ">=", 6),
    Target("gathered no-op: drop-in >= 1.3{x} stdlib calls/s",
           _ratio_of("gather-noop", "drop-in", "stdlib"), ">=", 1.3),
    Target("cf submit+result: fastexec >= 3{x} stdlib calls/s",
           _ratio_of("cf-submit", "fastexec pool", "stdlib pool"), ">=", 3),
    Target("cf map: fastexec >= 5{x} stdlib calls/s",
           _ratio_of("cf-map", "fastexec pool", "stdlib pool"), ">=", 5),
    Target("memory per pending call: fast path <= 1/8 of stdlib",
           _ratio_of("memory", "fast path", "stdlib"), "<=", 0.125),
    Target("sleep 1 ms: fast path within 10% of ideal (time/ideal <= 1.10)",
           _sleep_to_ideal, "<=", 1.10),
    Target("sha256: fast path no slower than stdlib (stdlib time/ours >= 0.95)",
           _ratio_of("sha256", "fast path", "stdlib", invert=True), ">=", 0.95),
    Target("gathered no-op: fast path >= 5{x} anyio.to_thread.run_sync",
           _ratio_of("gather-noop", "fast path", "anyio"), ">=", 5),
    Target("stretch: gathered no-op: fast path >= 50% of the no-thread limit",
           _ratio_of("gather-noop", "fast path", "limit (no thread)"), ">=",
           0.5, stretch=True),
    Target("stretch: round trip: fast path <= 0.33{x} stdlib {us}",
           _ratio_of("roundtrip", "fast path", "stdlib"), "<=", 0.33,
           stretch=True),
]


# --------------------------------------------------------------------------
# Output.

def _can_print(text):
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


_PRETTY = {"us/call": "\u00b5s/call"} if _can_print("\u00b5") else {}
X = "\u00d7" if _can_print("\u00d7") else "x"     # as in "12x faster"


def _unit(unit):
    return _PRETTY.get(unit, unit)


def _pretty(text):
    """A target's text with its {x} and {us} written for this terminal."""
    return text.format(x=X, us=_unit("us/call"))


def format_figure(value, unit):
    if value is None:
        return "-"
    if unit == "calls/s" or unit == "B/call":
        text = "{:,.0f}".format(value)
    elif value >= 100:
        text = "%.1f" % value
    else:
        text = "%.2f" % value
    return "%s %s" % (text, _unit(unit))


def _word(workload):
    if workload.unit == "B/call":
        return "smaller"
    return "faster"


def machine_info():
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "process_cpu_count": _process_cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc)
                .isoformat(timespec="seconds"),
    }


def print_header(env, info, args, rounds, out):
    versions = ["%s %s" % item for item in env.versions().items()]
    out("fastexec bench: %s mode, median of %d round%s after 1 warm-up "
        "round, interleaved" % ("quick" if args.quick else "full", rounds,
                                "" if rounds == 1 else "s"))
    out("Python %s (%s, %s) on %s" % (info["python"], info["implementation"],
                                      info["python_build"], info["platform"]))
    out("CPUs: os.cpu_count() = %s, process CPU count = %s; machine: %s, %s"
        % (info["cpu_count"], info["process_cpu_count"], info["machine"],
           info["cpu_model"] or "unknown CPU"))
    out("with: %s" % (", ".join(versions) or "stdlib only"))
    out("method: one event loop and one pool per contender per workload, "
        "reused by its rounds; gc on")
    for name, why in sorted(env.missing.items()):
        skipped = [c.name for c in CONTENDERS.values() if name in c.requires]
        out("skipped: %s (%s)" % (", ".join(skipped), why))
    for text in env.notes:
        out("note: %s" % text)
    out("")


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "?"


def print_table(results, out):
    header = ["workload", "contender", "median", "spread", "vs stdlib",
              "raw ratio", "note"]
    rows = []
    previous = None
    for r in results:
        workload = r.workload
        if workload is not previous:
            first = True
            if previous is not None:
                rows.append(None)   # a blank line between workloads
            previous = workload
        name_cell = ""
        if first:
            name_cell = workload.title
        elif rows and rows[-1] is not None and rows[-1][0] == workload.title:
            name_cell = "(%s is better)" % workload.better
        first = False
        if r.median is None:
            rows.append([name_cell, r.contender, "ERROR", "", "", "",
                         r.error or "no figure"])
            continue
        base = _baseline(results, r)
        spread = r.spread
        better = better_ratio(r, base)
        if base is r:
            versus = "baseline"
        elif better is None:
            versus = "-"
        else:
            versus = "%.2f%s %s" % (better, X, _word(workload))
        raw = raw_ratio(r, base)
        rows.append([
            name_cell,
            r.contender,
            format_figure(r.median, workload.unit),
            "-" if spread is None else "%.0f%%" % (100 * spread),
            versus,
            "-" if raw is None else "%.3f" % raw,
            note(results, r) + (("  (error: %s)" % r.error) if r.error else ""),
        ])
    widths = [len(h) for h in header]
    for row in rows:
        if row is not None:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]
    right = {2, 3, 5}

    def line(cells):
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            parts.append(cell.rjust(width) if i in right else cell.ljust(width))
        return "  ".join(parts).rstrip()

    out(line(header))
    out(line(["-" * w for w in widths]))
    for row in rows:
        out("" if row is None else line(row))
    out("")
    out("vs stdlib: times better than the workload's stdlib contender, > 1 is "
        "better in every row (stdlib/ours for times and bytes, ours/stdlib "
        "for calls/s).")
    out("raw ratio: our median / the stdlib median, as measured (below 1 is "
        "better for %s, ms and B/call; above 1 is better for calls/s)."
        % _unit("us/call"))
    out("spread: (max - min) / median over the counted rounds.")


def print_workloads(workloads, sizes, seconds, out, one_sleep_ms=None):
    out("")
    out("workloads (N, workers, seconds the workload took in all):")
    width = max([len(w.title) for w in workloads] or [0])
    for w in workloads:
        out("  %s  N = %s, %s workers, %.1f s: %s" % (
            w.title.ljust(width), "{:,}".format(sizes[w.key]),
            w.max_workers or _default_max_workers(),
            seconds.get(w.key, 0.0), w.description))
    if one_sleep_ms is not None and "sleep" in sizes:
        n = sizes["sleep"]
        floor = n * one_sleep_ms / SLEEP_WORKERS
        out("  (one time.sleep(%g) takes %.3f ms here, so even with no "
            "overhead the sleep workload takes %.2f ms, %.2f%s ideal)"
            % (SLEEP_SECONDS, one_sleep_ms, floor, floor / ideal_sleep_ms(n),
               X))


def evaluate_targets(results):
    return [(t,) + t.evaluate(results) for t in TARGETS]


def print_targets(evaluated, out):
    out("")
    out("targets (ratios are ours/theirs of the medians):")
    width = max(len(_pretty(t.text)) for t, _, _, _ in evaluated)
    for target, status, _value, shown in evaluated:
        out("  %s  %s  %s" % (status, _pretty(target.text).ljust(width),
                              shown if status == "SKIP" else "measured " + shown))
    main = [s for t, s, _, _ in evaluated if not t.stretch]
    stretch = [s for t, s, _, _ in evaluated if t.stretch]
    out("  met: %d/%d targets, %d/%d stretch (%d not measured)" % (
        main.count("PASS"), len(main), stretch.count("PASS"), len(stretch),
        (main + stretch).count("SKIP")))


def write_json(path, info, args, rounds, sizes, seconds, env, results,
               evaluated, one_sleep_ms=None):
    data = {
        "meta": dict(info, mode="quick" if args.quick else "full",
                     rounds=rounds, warmup_rounds=1, sizes=sizes,
                     one_sleep_ms=one_sleep_ms,
                     workload_seconds=seconds,
                     default_max_workers=_default_max_workers(),
                     versions=env.versions(),
                     skipped=env.missing, notes=env.notes),
        "contenders": {name: c.description for name, c in CONTENDERS.items()},
        "results": [],
        "targets": [],
    }
    for r in results:
        base = _baseline(results, r)
        data["results"].append({
            "workload": r.workload.key,
            "title": r.workload.title,
            "description": r.workload.description,
            "contender": r.contender,
            "unit": r.workload.unit,
            "better": r.workload.better,
            "n": r.size,
            "max_workers": r.max_workers,
            "warmup": r.warmup,
            "rounds": r.rounds,
            "median": r.median,
            "min": min(r.rounds) if r.rounds else None,
            "max": max(r.rounds) if r.rounds else None,
            "baseline": base.contender if base is not None else None,
            "vs_baseline": better_ratio(r, base),
            "raw_ratio": raw_ratio(r, base),
            "note": note(results, r),
            "error": r.error,
        })
    for target, status, value, shown in evaluated:
        data["targets"].append({
            "target": _pretty(target.text), "op": target.op,
            "threshold": target.threshold, "stretch": target.stretch,
            "status": status, "measured": value, "detail": shown,
        })
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_plot(path, results, info):
    """A bar chart of the 'vs stdlib' ratios; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from matplotlib.ticker import FuncFormatter

    labels, values, colors = [], [], []
    for r in results:
        base = _baseline(results, r)
        ratio = better_ratio(r, base)
        if ratio is None or base is r:
            continue
        labels.append("%s: %s" % (r.workload.title, r.contender))
        values.append(ratio)
        if r.contender in REFERENCES:
            colors.append("tab:gray")
        else:
            colors.append("tab:green" if ratio >= 1 else "tab:red")
    if not values:
        values, labels, colors = [1.0], ["(nothing to compare)"], ["white"]
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.28 * len(values)))
    y = list(range(len(values)))[::-1]
    # Bars start at 1 (as good as the stdlib) and go right when better.
    ax.barh(y, [v - 1.0 for v in values], left=1.0, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(min(values + [1.0]) / 1.6, max(values + [1.0]) * 1.6)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "%g\u00d7" % v))
    ax.axvline(1.0, color="black", linewidth=0.8)
    for yi, v in zip(y, values):
        ax.text(v, yi, " %.2f\u00d7 " % v, va="center", fontsize=7,
                ha="left" if v >= 1 else "right")
    ax.set_xlabel("times better than the stdlib contender (log scale; "
                  "> 1 is better; gray: references, not contenders)")
    ax.set_title("fastexec bench: Python %s, %s CPUs, %s" % (
        info["python"], info["cpu_count"], info["cpu_model"] or
        info["machine"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------
# Command line.

def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark fastexec against the stdlib (and uvloop and "
                    "anyio when installed), in one process, interleaved.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and smaller N (well under 30 s "
                             "on 2 cores)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="counted rounds per workload (default 5, "
                             "quick 3), after 1 warm-up round")
    parser.add_argument("--only", metavar="WORKLOAD[,..]",
                        help="run only these workloads: " +
                             ", ".join(WORKLOAD_KEYS))
    parser.add_argument("--json", metavar="FILE",
                        help="write every figure (all rounds, medians, "
                             "machine) as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a bar chart of the ratios (matplotlib)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr")
    return parser


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick
                                                          else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    selected = WORKLOAD_KEYS
    if args.only:
        selected = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in selected if k not in WORKLOAD_KEYS]
        if unknown or not selected:
            parser.error("%s; choose from %s" % (
                "unknown workload(s) " + ", ".join(unknown) if unknown
                else "no workload given", ", ".join(WORKLOAD_KEYS)))

    def out(text=""):
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # The reader went away (| head): keep going for --json / --plot.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    started = perf_counter()
    env = _Env()
    info = machine_info()
    print_header(env, info, args, rounds, out)

    fd, stat_path = tempfile.mkstemp(prefix="fastexec-bench-")
    try:
        os.write(fd, b"x" * 4096)
        os.close(fd)
        os.stat(stat_path)            # now it is in the cache
        workloads = [w for w in make_workloads(stat_path, os.urandom(SHA_BUFFER))
                     if w.key in selected]
        plan = [(w, [c for c in w.contenders if env.has(CONTENDERS[c].requires)])
                for w in workloads]
        sizes = {w.key: (w.quick_size if args.quick else w.full_size)
                 for w in workloads}
        progress = Progress(sum(len(cs) * (w.rounds_for(rounds) + 1)
                                for w, cs in plan),
                            enabled=not args.no_progress)
        one_sleep_ms = (measure_one_sleep_ms() if "sleep" in sizes
                        else None)
        results = []
        seconds = {}
        try:
            for workload, contenders in plan:
                t0 = perf_counter()
                results += run_workload(env, workload, contenders,
                                        sizes[workload.key], rounds, progress)
                seconds[workload.key] = perf_counter() - t0
        finally:
            progress.finish()
    finally:
        os.unlink(stat_path)

    print_table(results, out)
    print_workloads(workloads, sizes, seconds, out, one_sleep_ms)
    evaluated = evaluate_targets(results)
    print_targets(evaluated, out)

    if args.json:
        write_json(args.json, info, args, rounds, sizes, seconds, env,
                   results, evaluated, one_sleep_ms)
        out("")
        out("wrote %s" % args.json)
    if args.plot:
        if write_plot(args.plot, results, info):
            out("wrote %s" % args.plot)
        else:
            out("matplotlib is not installed: pip install matplotlib "
                "(no plot written)")
    out("")
    out("total time: %.1f s" % (perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate test_leaks.py's tolerances: the same harness (support.LeakProbe,
same counts, same chunking) on the stdlib and on fastexec, side by side.

    python tests/rel_leak_calibrate.py [stdlib|fastexec|both] [N]

Prints one line of figures per path.  Not collected by pytest (slow: the
stdlib's asyncio paths under tracemalloc run ~3,000 calls/s).
"""

import asyncio
import concurrent.futures
import sys
import threading

from support import LeakProbe

CHUNK = 2_000


class Arg:
    pass


class Res:
    pass


class LeakError(Exception):
    pass


ARG, KWARG, RES = Arg(), Arg(), Res()


def fn(a, k=None):
    return RES


def fn1(a):
    return RES


def fn_raise(a, k=None):
    raise LeakError(a, k)


def chunks(n, size=CHUNK):
    while n > 0:
        k = min(size, n)
        yield k
        n -= k


def paths(impl):
    import fastexec
    fast = impl == "fastexec"
    Pool = fastexec.ThreadPoolExecutor if fast else \
        concurrent.futures.ThreadPoolExecutor
    pool = Pool(4)
    loop = asyncio.new_event_loop()
    if not fast:
        loop.set_default_executor(Pool(4))

    def submit(n):
        for k in chunks(n):
            fs = [pool.submit(fn, ARG, k=KWARG) for _ in range(k)]
            for f in fs:
                assert f.result() is RES

    def map_(n):
        items = [ARG] * 10_000
        for k in chunks(n, 10_000):
            for r in pool.map(fn1, items[:k]):
                assert r is RES

    def run(n):
        async def go():
            for k in chunks(n):
                if fast:
                    fs = [pool.run(fn1, ARG) for _ in range(k)]
                else:
                    fs = [loop.run_in_executor(pool, fn1, ARG)
                          for _ in range(k)]
                await asyncio.gather(*fs)
        loop.run_until_complete(go())

    def to_thread(n):
        tt = fastexec.to_thread if fast else asyncio.to_thread

        async def worker(k):
            for _ in range(k):
                await tt(fn, ARG, k=KWARG)

        async def go():
            per = -(-n // 50)
            await asyncio.gather(*[worker(min(per, n - i * per))
                                   for i in range(50) if n > i * per])
        loop.run_until_complete(go())

    def wrap(n):
        wf = fastexec.wrap_future if fast else asyncio.wrap_future

        async def go():
            for k in chunks(n):
                await asyncio.gather(*[wf(pool.submit(fn, ARG))
                                       for _ in range(k)])
        loop.run_until_complete(go())

    def submit_raise(n):
        for k in chunks(n):
            fs = [pool.submit(fn_raise, ARG) for _ in range(k)]
            for f in fs:
                f.exception()

    def cancel(n):
        one = Pool(1)

        async def go():
            for k in chunks(n):
                gate = threading.Event()
                blocker = one.submit(gate.wait)
                if fast:
                    futs = [one.run(fn1, ARG) for _ in range(k)]
                else:
                    futs = [loop.run_in_executor(one, fn1, ARG)
                            for _ in range(k)]
                for f in futs:
                    f.cancel()
                await asyncio.sleep(0)
                gate.set()
                blocker.result()
                await asyncio.wrap_future(one.submit(fn1, ARG))
        loop.run_until_complete(go())
        one.shutdown()

    return pool, loop, [("submit", submit), ("map", map_),
                        ("run/run_in_executor", run), ("to_thread", to_thread),
                        ("wrap_future", wrap), ("submit raising", submit_raise),
                        ("cancel before start", cancel)]


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    impls = ["stdlib", "fastexec"] if which == "both" else [which]
    print(sys.version.split()[0], "N =", n)
    for impl in impls:
        pool, loop, ps = paths(impl)
        for name, drive in ps:
            p = LeakProbe("%s %s" % (impl, name), drive, n, 50_000,
                          watch=[fn, fn1, ARG, KWARG, RES])
            p.run(tracemalloc_warm=20_000)
            print(p.describe(), flush=True)
        pool.shutdown()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


if __name__ == "__main__":
    main()

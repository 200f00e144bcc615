"""The public API as a user types it: checked with ``mypy --strict`` by
tests/test_sourcecode.py (every supported --python-version) and run by it
too, so that what type-checks also works.  Not a test module."""

import asyncio
import concurrent.futures
from collections.abc import Iterator

import fastexec


def add(a: int, b: int = 0) -> int:
    return a + b


def shout(s: str, *, times: int = 1) -> str:
    return s.upper() * times


def pool_api() -> None:
    with fastexec.ThreadPoolExecutor(max_workers=2, thread_name_prefix="t",
                                     idle_timeout=1.0) as pool:
        fut: fastexec.Future[int] = pool.submit(add, 1, b=2)
        cf: concurrent.futures.Future[int] = fut     # a subclass
        assert cf.result(10) == 3
        fut.add_done_callback(lambda f: None)
        assert pool.submit(shout, "a", times=2).result(10) == "AA"
        results: Iterator[int] = pool.map(add, [1, 2], [3, 4], timeout=10)
        assert list(results) == [4, 6]
        stats: dict[str, int] = pool.stats()
        assert isinstance(stats, dict)
        assert isinstance(pool, concurrent.futures.ThreadPoolExecutor)
    pool.shutdown(wait=True, cancel_futures=False)
    executor: concurrent.futures.Executor = fastexec.ThreadPoolExecutor(1)
    executor.shutdown()


async def asyncio_api() -> None:
    loop = asyncio.get_running_loop()
    with fastexec.ThreadPoolExecutor(2) as pool:
        a: asyncio.Future[int] = pool.run(add, 1, b=2)
        assert await a == 3
        b: int = await fastexec.run_in_executor(pool, add, 2, 3)
        assert b == 5
        c: int = await fastexec.run_in_executor(None, add, 4)
        assert c == 4
        d: str = await fastexec.to_thread(shout, "x", times=3)
        assert d == "XXX"
        e: asyncio.Future[int] = fastexec.wrap_future(pool.submit(add, 5))
        assert await e == 5
        g = fastexec.wrap_future(pool.submit(add, 6), loop=loop)
        assert await g == 6
        h: int = await loop.run_in_executor(pool, add, 7)
        assert h == 7


def main() -> None:
    pool_api()
    fastexec.install()
    try:
        assert fastexec.installed()
        asyncio.run(asyncio_api())
    finally:
        fastexec.uninstall()
    assert not fastexec.installed()
    loop: asyncio.AbstractEventLoop = fastexec.new_event_loop()
    try:
        loop.run_until_complete(asyncio_api())
    finally:
        loop.close()
    version: str = fastexec.__version__
    assert version
    assert issubclass(fastexec.BrokenThreadPool, Exception)
    print("ok")


if __name__ == "__main__":
    main()

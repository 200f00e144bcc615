"""Real client libraries from PyPI on top of the bridge.

* aiofiles: it calls ``loop.run_in_executor(None, ...)``; with
  ``fastexec.install()`` (or a ``fastexec.new_event_loop()`` loop) those calls
  must take the fast path: the loop's default executor is a fastexec pool
  whose ``completed`` counter counts them, and no
  ``concurrent.futures.Future`` is made.
* ``loop.getaddrinfo`` with ``install()``: same answer as without.
* uvloop (its own tests are in test_bridge.py): aiofiles on uvloop with
  ``install()`` in effect still works (uvloop is left alone).
"""

import asyncio
import concurrent.futures
import threading

import pytest

import fastexec
from support import WAIT, wait_until

pytest.importorskip("aiofiles")
import aiofiles.os  # noqa: E402

cf = concurrent.futures

pytestmark = pytest.mark.timeout(30)

TEXT = "fastexec and aiofiles\n" * 200


def idle_stats(pool):
    assert wait_until(lambda: pool.stats()["running"] == 0), pool.stats()
    return pool.stats()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, WAIT))


def close_loop(loop):
    try:
        if not loop.is_closed():
            run(loop, loop.shutdown_default_executor())
    finally:
        loop.close()


@pytest.fixture
def cf_futures(monkeypatch):
    """Counts the concurrent.futures.Future objects made, in any thread: the
    stdlib's through Future.__init__, a fastexec pool's (made in C, without
    __init__) through its submit()."""
    lock = threading.Lock()
    count = [0]
    orig_init = cf.Future.__init__
    orig_submit = fastexec.ThreadPoolExecutor.submit

    def counting_init(self, *args, **kwargs):
        with lock:
            count[0] += 1
        orig_init(self, *args, **kwargs)

    def counting_submit(self, fn, /, *args, **kwargs):
        with lock:
            count[0] += 1
        return orig_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(cf.Future, "__init__", counting_init)
    monkeypatch.setattr(fastexec.ThreadPoolExecutor, "submit", counting_submit)
    # The fast paths are taken only for a pool whose submit is our own (a
    # subclass's override is kept, issue 9): this instrument stands for it.
    monkeypatch.setattr(fastexec._bridge, "_POOL_SUBMIT", counting_submit)
    return count


def test_the_counter_sees_both_kinds(cf_futures):
    pool = fastexec.ThreadPoolExecutor(max_workers=1)
    try:
        before = cf_futures[0]
        assert pool.submit(int, "1").result(WAIT) == 1
        cf.Future()
        assert cf_futures[0] - before == 2
    finally:
        pool.shutdown(wait=True)


@pytest.fixture
def installed():
    fastexec.install()
    try:
        yield
    finally:
        fastexec.uninstall()


async def aiofiles_roundtrip(path):
    async with aiofiles.open(path, "w") as f:
        await f.write(TEXT)
        await f.flush()
    async with aiofiles.open(path, "r") as f:
        read = await f.read()
    st = await aiofiles.os.stat(path)
    return read, st.st_size


def _check_fast_aiofiles(loop, path, cf_futures):
    async def main():
        before = cf_futures[0]
        read, size = await aiofiles_roundtrip(path)
        made = cf_futures[0] - before
        default = loop._default_executor
        return read, size, made, default

    read, size, made, default = run(loop, main())
    assert read == TEXT
    assert size == len(TEXT.encode())
    assert type(default) is fastexec.ThreadPoolExecutor
    # open, write, flush, close, open, read, close, stat: all in the pool,
    # and none of them made a concurrent.futures.Future.
    assert idle_stats(default)["completed"] >= 8
    assert made == 0


def test_aiofiles_with_install_takes_fast_path(installed, tmp_path, cf_futures):
    loop = asyncio.new_event_loop()
    try:
        _check_fast_aiofiles(loop, tmp_path / "data.txt", cf_futures)
        # Counted: a second round trip adds its calls to the same pool.
        default = loop._default_executor
        before = idle_stats(default)["completed"]
        assert run(loop, aiofiles_roundtrip(tmp_path / "data2.txt"))[0] == TEXT
        assert idle_stats(default)["completed"] - before >= 8
    finally:
        close_loop(loop)
    assert (tmp_path / "data.txt").read_text() == TEXT


def test_aiofiles_with_new_event_loop_takes_fast_path(tmp_path, cf_futures):
    loop = fastexec.new_event_loop()
    try:
        _check_fast_aiofiles(loop, tmp_path / "data.txt", cf_futures)
    finally:
        close_loop(loop)
    assert not fastexec.installed()


def test_aiofiles_without_install_is_the_stdlib(tmp_path, cf_futures):
    """The reference: no install, the stdlib's executor and futures."""
    loop = asyncio.new_event_loop()
    try:
        async def main():
            before = cf_futures[0]
            result = await aiofiles_roundtrip(tmp_path / "data.txt")
            return result, cf_futures[0] - before

        (read, size), made = run(loop, main())
        assert read == TEXT
        assert type(loop._default_executor) is cf.ThreadPoolExecutor
        assert made >= 8
    finally:
        close_loop(loop)


def test_aiofiles_on_uvloop_with_install(installed, tmp_path):
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        read, size = run(loop, aiofiles_roundtrip(tmp_path / "data.txt"))
        assert read == TEXT
        assert size == len(TEXT.encode())
    finally:
        close_loop(loop)


def test_aiofiles_errors_with_install(installed, tmp_path):
    loop = asyncio.new_event_loop()
    try:
        async def main():
            with pytest.raises(FileNotFoundError) as info:
                async with aiofiles.open(tmp_path / "missing" / "x.txt") as f:
                    await f.read()
            return info.value

        exc = run(loop, main())
        assert exc.filename == str(tmp_path / "missing" / "x.txt")
    finally:
        close_loop(loop)


def _getaddrinfo(loop, *args):
    async def main():
        return await loop.getaddrinfo(*args)
    return run(loop, main())


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_getaddrinfo_with_install(host, cf_futures):
    loop = asyncio.new_event_loop()
    try:
        expected = _getaddrinfo(loop, host, 80)
    finally:
        close_loop(loop)
    assert expected

    fastexec.install()
    try:
        loop = asyncio.new_event_loop()
        try:
            before = cf_futures[0]
            got = _getaddrinfo(loop, host, 80)
            made = cf_futures[0] - before
            default = loop._default_executor
            assert type(default) is fastexec.ThreadPoolExecutor
            assert idle_stats(default)["completed"] >= 1
        finally:
            close_loop(loop)
    finally:
        fastexec.uninstall()
    assert got == expected
    assert made == 0


def test_getaddrinfo_failure_with_install(installed):
    import socket
    loop = asyncio.new_event_loop()
    try:
        async def main():
            with pytest.raises(socket.gaierror):
                await loop.getaddrinfo("host.invalid", 80)
        run(loop, main())
    finally:
        close_loop(loop)

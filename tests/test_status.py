"""install()'s choices (twice, pool=True, a foreign default executor, a loop
it can't patch) and fastexec.status()."""

import asyncio
import asyncio.base_events
import concurrent.futures
import concurrent.futures.thread
import platform
import subprocess
import sys
import warnings

import pytest

import fastexec
from support import WAIT

STDLIB_POOL = concurrent.futures.thread.ThreadPoolExecutor
PATH_NONE = "loop.run_in_executor(None, ...)"


@pytest.fixture(autouse=True)
def restore():
    fastexec.uninstall()
    yield
    fastexec.uninstall()
    assert concurrent.futures.ThreadPoolExecutor is STDLIB_POOL


def test_status_without_install():
    st = fastexec.status()
    assert st["version"] == fastexec.__version__
    assert st["installed"] is False and st["pool_replaced"] is False
    assert st["loop_running"] is False
    assert st["paths"][PATH_NONE].startswith("stdlib: install() is not in effect")
    assert st["paths"]["asyncio.to_thread"].startswith("stdlib:")
    assert st["paths"]["pool.run / fastexec.run_in_executor(pool, ...)"] == "fast"
    text = str(st)
    assert "install(): not in effect" in text and PATH_NONE in text


def test_install_twice_and_uninstall_once():
    orig = asyncio.base_events.BaseEventLoop.run_in_executor
    fastexec.install()
    patched = asyncio.base_events.BaseEventLoop.run_in_executor
    fastexec.install()
    assert asyncio.base_events.BaseEventLoop.run_in_executor is patched
    assert fastexec.installed()
    assert all(v == "fast" for v in fastexec.status()["paths"].values())
    fastexec.uninstall()
    assert asyncio.base_events.BaseEventLoop.run_in_executor is orig
    assert asyncio.to_thread.__module__ == "asyncio.threads"
    assert not fastexec.installed()


def test_foreign_default_executor_warns_once_and_status_says_why():
    fastexec.install()
    foreign = STDLIB_POOL(max_workers=2)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(foreign)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await loop.run_in_executor(None, int)   # this line is blamed
            await loop.run_in_executor(None, int)
            await asyncio.to_thread(int)
        return caught, fastexec.status()

    caught, st = asyncio.run(main())
    assert [w.category for w in caught] == [fastexec.SlowPathWarning]
    assert caught[0].filename == __file__
    assert "concurrent.futures.thread.ThreadPoolExecutor" in str(caught[0].message)
    assert st["loop_running"] is True
    assert "not a fastexec pool" in st["paths"][PATH_NONE]
    assert "not a fastexec pool" in st["paths"]["asyncio.to_thread"]
    assert st["paths"]["loop.run_in_executor(fastexec pool, ...)"] == "fast"


def test_install_pool_replaces_the_class():
    fastexec.install(pool=True)
    assert concurrent.futures.ThreadPoolExecutor is fastexec.ThreadPoolExecutor
    # Only the public name: the stdlib module keeps its class.
    assert concurrent.futures.thread.ThreadPoolExecutor is STDLIB_POOL
    assert fastexec.status()["pool_replaced"] is True

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await loop.run_in_executor(None, int)
        return fastexec.status()

    st = asyncio.run(main())
    assert st["paths"][PATH_NONE] == "fast"
    # Calling again changes only the pool choice.
    fastexec.install()
    assert concurrent.futures.ThreadPoolExecutor is STDLIB_POOL
    assert fastexec.installed()


def test_status_on_uvloop():
    uvloop = pytest.importorskip("uvloop")
    fastexec.install()
    loop = uvloop.new_event_loop()
    try:
        st = fastexec.status(loop)
    finally:
        loop.close()
    assert st["loop"].startswith("uvloop")
    assert "has its own run_in_executor" in st["paths"][PATH_NONE]
    assert st["paths"]["pool.run / fastexec.run_in_executor(pool, ...)"] == "fast"


def test_new_event_loop_is_fast_without_install():
    loop = fastexec.new_event_loop()
    try:
        st = fastexec.status(loop)
    finally:
        loop.close()
    assert st["installed"] is False
    assert st["paths"][PATH_NONE] == "fast"
    assert st["paths"]["asyncio.to_thread"].startswith("stdlib:")


def test_status_default_executor_overriding_submit():
    class Traced(fastexec.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            return super().submit(fn, *args, **kwargs)

    fastexec.install()

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(Traced(2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # a subclass of ours: no warning
            await loop.run_in_executor(None, int)
        return fastexec.status()

    st = asyncio.run(main())
    assert "overrides submit" in st["paths"][PATH_NONE]


@pytest.mark.parametrize("args, installed, pool", [
    ([], "install(): in effect", "the stdlib's"),
    (["--pool"], "install(): in effect", "fastexec's pool"),
    (["--no-install"], "install(): not in effect", "the stdlib's"),
])
def test_status_command(args, installed, pool):
    # `python -m fastexec status`: what the README's one-liner printed.
    r = subprocess.run([sys.executable, "-m", "fastexec", "status", *args],
                       capture_output=True, text=True, timeout=WAIT,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "fastexec %s on CPython %s" % (fastexec.__version__,
                                                    platform.python_version())
    assert lines[1] == installed
    assert pool in lines[2]
    paths = dict((k.strip(), v.strip()) for k, v in
                 (ln.strip().rsplit("  ", 1) for ln in lines[4:]))
    assert len(paths) == 5
    verdict = paths[PATH_NONE]
    assert (verdict == "fast") == ("--no-install" not in args), verdict


def test_status_command_refuses_bad_arguments():
    r = subprocess.run([sys.executable, "-m", "fastexec", "status", "--pool",
                        "--no-install"], capture_output=True, text=True,
                       timeout=WAIT, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "not allowed with argument" in r.stderr

"""A pytest plugin for running anyio's own test suite with fastexec's anyio
hook in effect (``-p anyio_suite_plugin``, with this directory on
``sys.path``); used by ``test_anyio.py::test_anyio_own_test_suite``.

It installs the hook before anyio's tests are collected, counts the calls
that go through it, and at the end of the session writes what it saw to the
JSON file named by ``FASTEXEC_ANYIO_REPORT``: whether the hook was still the
installed method, and how many calls it took.  With
``FASTEXEC_ANYIO_HOOK=0`` it installs nothing (the baseline run) and only
reports.
"""

import json
import os

import fastexec
from fastexec import _anyio

_calls = {"n": 0}

if os.environ.get("FASTEXEC_ANYIO_HOOK", "1") == "1":
    fastexec.install()
    from anyio._backends._asyncio import AsyncIOBackend

    _hook = AsyncIOBackend.__dict__["run_sync_in_worker_thread"].__func__
    assert getattr(_hook, "_fastexec_hook", False), "the anyio hook is not installed"

    async def _counting(cls, *args, **kwargs):
        _calls["n"] += 1
        return await _hook(cls, *args, **kwargs)

    _counting._fastexec_hook = True
    AsyncIOBackend.run_sync_in_worker_thread = classmethod(_counting)


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("FASTEXEC_ANYIO_REPORT")
    if not path:
        return
    hooked = False
    try:
        from anyio._backends._asyncio import AsyncIOBackend
        meth = AsyncIOBackend.__dict__["run_sync_in_worker_thread"].__func__
        hooked = bool(getattr(meth, "_fastexec_hook", False))
    except Exception:
        pass
    with open(path, "w") as f:
        json.dump({"hooked": hooked, "installed": _anyio.installed(),
                   "calls": _calls["n"]}, f)

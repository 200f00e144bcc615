"""fastexec: a C thread pool and a fast asyncio executor bridge.

The pool is the C extension ``fastexec._fastexec``; the ``ThreadPoolExecutor``
class glue and the exit/fork hooks are in ``fastexec._executor``, the asyncio
side in ``fastexec._bridge``.  This module only re-exports them.
"""

# The C module first: in an interpreter it can't be loaded into (one with its
# own GIL) the import is refused here, cleanly, before anything else is
# imported (on 3.12, importing asyncio in such an interpreter and exiting
# crashes CPython itself).
from . import _fastexec  # noqa: I001  (must stay first)

from ._executor import BrokenThreadPool, Future, ThreadPoolExecutor
from ._bridge import (
    install,
    installed,
    new_event_loop,
    run_in_executor,
    to_thread,
    uninstall,
    wrap_future,
)
from ._uvloop import new_uvloop_event_loop
from ._status import SlowPathWarning, status

__all__ = [
    "ThreadPoolExecutor",
    "run_in_executor",
    "to_thread",
    "wrap_future",
    "install",
    "uninstall",
    "installed",
    "new_event_loop",
    "new_uvloop_event_loop",
    "status",
    "SlowPathWarning",
]

__version__ = "0.1.0"

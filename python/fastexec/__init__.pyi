import asyncio
import concurrent.futures
import concurrent.futures.thread
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from typing_extensions import ParamSpec, disjoint_base

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

_T = TypeVar("_T")
_P = ParamSpec("_P")

__version__: str

BrokenThreadPool = concurrent.futures.thread.BrokenThreadPool

@disjoint_base
class Future(concurrent.futures.Future[_T]):
    """What ``submit`` returns: a ``concurrent.futures.Future`` subclass (in C)."""

    # The C methods take their argument positionally only.
    def add_done_callback(self, fn: Callable[[Future[_T]], object], /) -> None: ...
    def set_result(self, result: _T, /) -> None: ...
    def set_exception(self, exception: BaseException | None, /) -> None: ...

class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        idle_timeout: float | None = None,
        **ctxkwargs: Any,
    ) -> None: ...
    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> Future[_T]: ...
    # buffersize (3.14's) on every version.
    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[_T]: ...

    def run(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> asyncio.Future[_T]:
        """Run ``fn(*args, **kwargs)`` in the pool; the outcome lands on an
        asyncio future of the running loop."""
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
    def stats(self) -> dict[str, int]: ...

def run_in_executor(
    executor: concurrent.futures.Executor | None,
    func: Callable[_P, _T],
    /,
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> asyncio.Future[_T]: ...
async def to_thread(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T: ...
def wrap_future(
    future: concurrent.futures.Future[_T] | asyncio.Future[_T],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.Future[_T]: ...
def install(*, anyio: bool = ..., pool: bool = ...) -> None: ...
def uninstall() -> None: ...
def installed() -> bool: ...
def new_event_loop() -> asyncio.AbstractEventLoop: ...
def new_uvloop_event_loop() -> asyncio.AbstractEventLoop: ...

class SlowPathWarning(RuntimeWarning): ...
def status(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Any]: ...

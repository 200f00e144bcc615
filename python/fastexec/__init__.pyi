import asyncio
import concurrent.futures
import contextvars
from typing import Any, Awaitable, Callable, Coroutine, Dict, Iterable, Iterator, Optional, Tuple, TypeVar

_T = TypeVar("_T")

__version__: str

BrokenThreadPool = concurrent.futures.thread.BrokenThreadPool

class Future(concurrent.futures.Future[_T]):
    """What ``submit`` returns: a ``concurrent.futures.Future`` subclass."""

class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(
        self,
        max_workers: Optional[int] = ...,
        thread_name_prefix: str = ...,
        initializer: Optional[Callable[..., object]] = ...,
        initargs: Tuple[Any, ...] = ...,
        *,
        idle_timeout: Optional[float] = ...,
    ) -> None: ...
    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[_T]: ...
    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: Optional[float] = ...,
        chunksize: int = ...,
    ) -> Iterator[_T]: ...
    def run(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> asyncio.Future[_T]: ...
    def shutdown(self, wait: bool = ..., *, cancel_futures: bool = ...) -> None: ...
    def stats(self) -> Dict[str, int]: ...

def run_in_executor(
    executor: Optional[concurrent.futures.Executor], func: Callable[..., _T], /, *args: Any, **kwargs: Any
) -> asyncio.Future[_T]: ...
def to_thread(func: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, _T]: ...
def wrap_future(
    future: "concurrent.futures.Future[_T] | asyncio.Future[_T]", *, loop: Optional[asyncio.AbstractEventLoop] = ...
) -> asyncio.Future[_T]: ...
def install() -> None: ...
def uninstall() -> None: ...
def installed() -> bool: ...
def new_event_loop() -> asyncio.AbstractEventLoop: ...

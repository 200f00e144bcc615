"""The app workloads' contenders and rounds (the servers themselves are
app.py, the raw asyncio app, and starlette_app.py, Starlette under uvicorn)."""

import os
import tempfile

from . import app
from .runner import Workload

# contender -> (server mode, optional modules it needs, description)
CONTENDERS = {
    "stdlib": ("stdlib", (),
               ("the handler's hops through loop.run_in_executor(None, f) "
                "and asyncio.to_thread(f), stdlib")),
    "install()": ("install", ("fastexec",),
                  ("the same handler, fastexec.install() called before the "
                   "loop starts")),
    "fastexec pool": ("pool", ("fastexec",),
                      ("each hop await pool.run(f), pool a "
                       "fastexec.ThreadPoolExecutor()")),
    "inline (no thread)": ("inline", (),
                           ("the four calls made on the loop's thread, no "
                            "executor: the app's upper bound")),
}
REFERENCE = "inline (no thread)"

STARLETTE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(app.__file__)),
                                "starlette_app.py")
_STARLETTE = ("starlette", "uvicorn")
# The Starlette workload's: the same names, its own server (starlette_app.py).
STARLETTE_CONTENDERS = {
    "stdlib": ("stdlib", _STARLETTE,
               ("Starlette's sync endpoint as it runs it: in anyio's worker "
                "threads (run_in_threadpool, anyio.to_thread.run_sync)")),
    "install()": ("install", ("fastexec",) + _STARLETTE,
                  ("the same app, fastexec.install() called before uvicorn "
                   "starts: the endpoint runs on fastexec's anyio pool")),
    "inline (no thread)": ("inline", _STARLETTE,
                           ("the same calls in an async endpoint, on the "
                            "loop's thread, no worker thread: the app's upper "
                            "bound")),
}


class AppSession:
    """A contender of the app workload; every round starts its own server
    process (so rounds are also separate processes)."""

    def __init__(self, mode, settings, script=None, hops="real"):
        self.mode = mode
        self.settings = settings
        self.script = script
        self.hops = hops

    def close(self):
        pass


class AppSettings:
    """What every round of the app workloads shares: data files, the client,
    the durations."""

    def __init__(self, duration, warmup, wrk):
        if wrk:
            # wrk counts in whole seconds.
            duration = max(1, round(duration))
            warmup = max(1, round(warmup)) if warmup > 0 else 0
        self.duration = duration
        self.warmup = warmup
        self.wrk = wrk
        self._dir = None

    @property
    def data_dir(self):
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="fastexec-bench-app-")
            app.make_data(self._dir.name)
        return self._dir.name

    def client_name(self):
        if self.wrk:
            return "wrk %s (%s), 1 thread" % (app.wrk_version(self.wrk),
                                              self.wrk)
        why = ("--client bundled" if app.find_wrk() else
               "wrk is not installed; Debian/Ubuntu: apt-get install wrk")
        return ("the bundled asyncio load client, in its own process (%s); "
                "it may limit the fastest contenders" % why)

    def cleanup(self):
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def measure(session, connections):
    s = session.settings
    result = app.run_round(session.mode, s.data_dir, connections, s.duration,
                           s.warmup, s.wrk, script=session.script,
                           hops=session.hops)
    result["client"] = "wrk" if s.wrk else "bundled"
    return result["requests_per_second"], result


def make_workloads(settings, connections=32):
    def workload(key, conns, title, contenders, script, description,
                 hops="real"):
        def open_session(env, name, max_workers):
            return AppSession(contenders[name][0], settings, script, hops)

        return Workload(
            key, title, "req/s", "higher", list(contenders), measure,
            open_session, conns, conns, references=(REFERENCE,),
            warmup_round=False, size_text="connections",
            requires={c: v[1] for c, v in contenders.items()},
            description=(
                description % (conns, "" if conns == 1 else "s")
                + "; a new server process per round, %g s of warm-up then "
                "%g s measured" % (settings.warmup, settings.duration)))

    raw = ("HTTP/1.1 keep-alive server on 127.0.0.1 (asyncio streams), "
           "%d connection%s; per request 4 sequential hops: os.stat, sha256 "
           "of 4 KB, read a 2 KB file, one sqlite3 query")
    return [workload("app", connections,
                     "HTTP app, %d connections" % connections, CONTENDERS,
                     None, raw),
            workload("app-1", 1, "HTTP app, 1 connection", CONTENDERS, None,
                     raw),
            workload("app-noop", connections,
                     "HTTP app, no-op hops, %d connections" % connections,
                     CONTENDERS, None,
                     "the HTTP app's server, %d connection%s, with its 4 "
                     "hops' functions returning the same values at once "
                     "(app.py --hops noop): what a hop costs besides its "
                     "work, the bridge's share of the app", hops="noop"),
            workload("starlette", connections,
                     "Starlette app, %d connections" % connections,
                     STARLETTE_CONTENDERS, STARLETTE_SCRIPT,
                     "Starlette app served by uvicorn on 127.0.0.1 (asyncio "
                     "loop, uvicorn's http=auto: the JSON's server_http says "
                     "which), HTTP/1.1 keep-alive, %d connection%s; per "
                     "request one endpoint making the same 4 calls one after "
                     "the other: sync for stdlib and install() (Starlette "
                     "runs it in a worker thread), async for inline")]


WORKLOAD_KEYS = ["app", "app-1", "app-noop", "starlette"]
# Run only when named (--only starlette,app-noop): not part of the default run.
OPT_IN_KEYS = ["app-noop", "starlette"]

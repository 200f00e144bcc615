"""The app workload's contenders and rounds (the server itself is app.py)."""

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


class AppSession:
    """A contender of the app workload; every round starts its own server
    process (so rounds are also separate processes)."""

    def __init__(self, mode, settings):
        self.mode = mode
        self.settings = settings

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
                           s.warmup, s.wrk)
    result["client"] = "wrk" if s.wrk else "bundled"
    return result["requests_per_second"], result


def make_workloads(settings, connections=32):
    def open_session(env, name, max_workers):
        return AppSession(CONTENDERS[name][0], settings)

    def workload(key, conns, title):
        return Workload(
            key, title, "req/s", "higher", list(CONTENDERS), measure,
            open_session, conns, conns, references=(REFERENCE,),
            warmup_round=False, size_text="connections",
            requires={c: v[1] for c, v in CONTENDERS.items()},
            description=(
                "HTTP/1.1 keep-alive server on 127.0.0.1 (asyncio streams), "
                "%d connection%s; per request 4 sequential hops: os.stat, "
                "sha256 of 4 KB, read a 2 KB file, one sqlite3 query; a new "
                "server process per round, %g s of warm-up then %g s measured"
                % (conns, "" if conns == 1 else "s", settings.warmup,
                   settings.duration)))

    return [workload("app", connections,
                     "HTTP app, %d connections" % connections),
            workload("app-1", 1, "HTTP app, 1 connection")]


WORKLOAD_KEYS = ["app", "app-1"]

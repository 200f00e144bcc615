"""What the benchmark runs on: optional modules, the machine, the load beside it."""

import datetime
import os
import platform
import subprocess
import sys


def process_cpu_count():
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_max_workers():
    """The stdlib ThreadPoolExecutor's default, which fastexec's shares (one
    definition, in the package)."""
    from .._executor import _default_max_workers
    return _default_max_workers()


def dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "?"


class Env:
    """The optional modules, or why each is missing."""

    def __init__(self):
        self.fastexec = self.uvloop = self.anyio = None
        self.starlette = self.uvicorn = None
        self.missing = {}
        self.notes = []
        try:
            import fastexec
        except ImportError as exc:
            self.missing["fastexec"] = (
                "the C extension does not import (%s); build it: pip install ."
                % exc)
        else:
            self.fastexec = fastexec
            if fastexec.installed():
                # The stdlib contenders must run the stdlib's code.
                fastexec.uninstall()
                self.notes.append("fastexec.install() was in effect: undone "
                                  "for the benchmark")
        try:
            import uvloop
        except ImportError:
            self.missing["uvloop"] = "uvloop is not installed: pip install uvloop"
        else:
            self.uvloop = uvloop
        try:
            import anyio
            import anyio.to_thread  # noqa: F401
        except ImportError:
            self.missing["anyio"] = "anyio is not installed: pip install anyio"
        else:
            self.anyio = anyio
        # The Starlette workload's (its server imports them, in its process).
        for name in ("starlette", "uvicorn"):
            try:
                module = __import__(name)
            except ImportError as exc:
                self.missing[name] = ("%s does not import (%s): pip install %s"
                                      % (name, exc, name))
            else:
                setattr(self, name, module)

    def versions(self):
        found = {}
        if self.fastexec is not None:
            found["fastexec"] = self.fastexec.__version__
        if self.uvloop is not None:
            found["uvloop"] = getattr(self.uvloop, "__version__", "?")
        if self.anyio is not None:
            found["anyio"] = dist_version("anyio")
        for name in ("starlette", "uvicorn"):
            if getattr(self, name) is not None:
                found[name] = dist_version(name)
        return found

    def has(self, requires):
        return all(getattr(self, name) is not None for name in requires)


def load_average():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def machine_info():
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "process_cpu_count": process_cpu_count(),
        "load_average_at_start": load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc)
                .isoformat(timespec="seconds"),
    }


# A CPU-bound process: spins, and ends by itself when its parent is gone (so
# that a killed benchmark leaves nothing spinning).
_SPINNER = """
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(200000):
        pass
"""


class Load:
    """``--load N``: N CPU-bound processes beside the benchmark, started
    before the first workload and stopped after the last."""

    def __init__(self, count):
        self.count = count
        self.procs = []

    def __enter__(self):
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", _SPINNER], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def alive(self):
        return sum(1 for p in self.procs if p.poll() is None)

    def __exit__(self, *exc):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []
        return False

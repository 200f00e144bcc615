"""``pytest --fastexec``: run a test session with ``fastexec.install()`` in
effect; ``--fastexec=pool`` also makes ``concurrent.futures.ThreadPoolExecutor``
fastexec's pool (``install(pool=True)``).

Registered through the ``pytest11`` entry point and off unless asked.  The
choice reaches the Python subprocesses the tests start: the plugin sets
``FASTEXEC_INSTALL`` and puts a directory holding a small ``sitecustomize``
first on ``PYTHONPATH`` (see ``pytest-site/sitecustomize.py``).  Like
pytest-cov's ``--cov``, the value is optional, so write ``--fastexec=pool``
with the ``=`` and put test paths before a bare ``--fastexec``.
"""

import os

import pytest

MODES = ("install", "pool")
ENV = "FASTEXEC_INSTALL"
_saved_env = None


def pytest_addoption(parser):
    group = parser.getgroup("fastexec")
    group.addoption(
        "--fastexec", action="store", nargs="?", const="install", default=None,
        metavar="pool", dest="fastexec",
        help="run the session with fastexec.install() in effect, in its Python "
             "subprocesses too; --fastexec=pool also replaces "
             "concurrent.futures.ThreadPoolExecutor with fastexec's pool")


def _mode(config):
    mode = getattr(config.known_args_namespace, "fastexec", None)
    if mode is not None and mode not in MODES:
        raise pytest.UsageError(
            "--fastexec takes no value or =pool, got %r (write test paths "
            "before a bare --fastexec, or --fastexec=install)" % (mode,))
    return mode


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # Before conftests and test modules are imported, so that their
    # 'from concurrent.futures import ThreadPoolExecutor' sees the choice.
    global _saved_env
    mode = _mode(early_config)
    if mode is None:
        return
    import fastexec
    here = os.path.join(os.path.dirname(os.path.abspath(fastexec.__file__)), "pytest-site")
    _saved_env = {k: os.environ.get(k) for k in (ENV, "PYTHONPATH")}
    os.environ[ENV] = mode
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = here + (os.pathsep + old if old else "")
    fastexec.install(pool=(mode == "pool"))
    early_config._fastexec_mode = mode


def pytest_report_header(config):
    mode = getattr(config, "_fastexec_mode", None)
    if mode is None:
        return None
    import fastexec
    return "fastexec %s: install(%s) in effect, in subprocesses too" % (
        fastexec.__version__, "pool=True" if mode == "pool" else "")


def pytest_unconfigure(config):
    global _saved_env
    if getattr(config, "_fastexec_mode", None) is None:
        return
    import fastexec
    fastexec.uninstall()
    for key, value in (_saved_env or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env = None
    config._fastexec_mode = None

"""Start-up hook for tools/cpython_suite.py (not a test module).

tools/cpython_suite.py copies this file, with a ``_fastexec_suite_hook.json``
and a ``_fastexec_suite_hook.pth`` that imports it, into the site-packages of
a throw-away "shadow" virtual environment that it creates over the running
interpreter.  Every interpreter started from that environment's
``bin/python`` -- the test runner, and everything the tests start with
``sys.executable``: ``script_helper.assert_python_ok`` children (which run
with ``-I``, so PYTHONPATH and a sitecustomize.py on it would be ignored),
multiprocessing spawn and forkserver children -- processes the .pth at
start-up and so runs ``activate()``, which:

1. adds the site directories of the interpreter that runs the harness (where
   fastexec is installed), so that ``import fastexec`` works everywhere;
2. when the environment variable FASTEXEC_CPYTHON_SUITE_PATCH is "1", arranges
   for ``concurrent.futures.ThreadPoolExecutor`` and
   ``concurrent.futures.thread.ThreadPoolExecutor`` to be
   ``fastexec.ThreadPoolExecutor`` from the moment ``concurrent.futures`` is
   first imported -- before any test module can bind the name (e.g.
   ``ThreadPoolMixin.executor_type = futures.ThreadPoolExecutor`` at class
   creation, or ``from concurrent.futures.thread import ThreadPoolExecutor``).

The variable's name does not start with PYTHON, so ``-E``/``-I`` children keep
it.  Nothing is printed: several CPython tests assert that a child's stderr is
empty.  If ``import fastexec`` fails in patch mode, the import of
``concurrent.futures`` fails with that error, loudly, rather than silently
testing the stdlib pool.
"""

import json
import os
import sys

ENV_VAR = "FASTEXEC_CPYTHON_SUITE_PATCH"
_TARGET = "concurrent.futures"
_activated = False


def patch_enabled():
    return os.environ.get(ENV_VAR) == "1"


def _patch(cf_module):
    # ``concurrent.futures`` has finished executing; fastexec imports it (and
    # asyncio) itself, and subclasses the stdlib ThreadPoolExecutor, which it
    # must see before we replace the names.  The import system binds the
    # submodule on its parent package only after exec_module returns; do it
    # now, as code like ``import concurrent.futures; concurrent.futures.X``
    # (fastexec's) needs it.
    setattr(sys.modules["concurrent"], "futures", cf_module)
    import concurrent.futures.thread as cf_thread
    import fastexec

    cls = fastexec.ThreadPoolExecutor
    cf_module.ThreadPoolExecutor = cls
    cf_thread.ThreadPoolExecutor = cls


class _PatchingLoader:
    """Wraps the loader of concurrent/futures/__init__.py: runs it, then
    patches.  Every other attribute (get_source, is_package, ...) is the
    original loader's."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch(module)


class _Finder:
    """One-shot meta path finder for ``concurrent.futures``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        import importlib.util
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def _add_site_dirs():
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "_fastexec_suite_hook.json")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except OSError:
        return
    import site
    for d in cfg.get("site_dirs", ()):
        if os.path.isdir(d):
            site.addsitedir(d)
    for d in cfg.get("extra_paths", ()):
        if os.path.isdir(d) and d not in sys.path:
            sys.path.append(d)


def activate():
    global _activated
    if _activated:
        return
    _activated = True
    _add_site_dirs()
    if not patch_enabled():
        return
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    else:
        sys.meta_path.insert(0, _Finder())

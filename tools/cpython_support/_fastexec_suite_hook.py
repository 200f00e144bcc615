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
2. when the environment variable FASTEXEC_CPYTHON_SUITE_PATCH is "1" (or
   "install"), arranges for ``concurrent.futures.ThreadPoolExecutor`` and
   ``concurrent.futures.thread.ThreadPoolExecutor`` to be
   ``fastexec.ThreadPoolExecutor`` from the moment ``concurrent.futures`` (or
   ``asyncio``, which imports it half-way through) has been imported -- before
   any test module can bind the name (e.g. ``ThreadPoolMixin.executor_type =
   futures.ThreadPoolExecutor`` at class creation, or ``from
   concurrent.futures.thread import ThreadPoolExecutor``);
3. when that variable is "install" (tools/asyncio_suite.py), also calls
   ``fastexec.install()`` at that moment, so that asyncio runs with
   fastexec's ``run_in_executor`` and ``to_thread`` from its first use.

The variable's name does not start with PYTHON, so ``-E``/``-I`` children keep
it.  Nothing is printed: several CPython tests assert that a child's stderr is
empty.  If ``import fastexec`` fails in patch mode, the import of
``concurrent.futures`` (or ``asyncio``) fails with that error, loudly, rather than silently
testing the stdlib pool.
"""

import json
import os
import sys

ENV_VAR = "FASTEXEC_CPYTHON_SUITE_PATCH"
_TARGET = "concurrent.futures"
_activated = False


def patch_mode():
    """None, "pool" (replace the pool) or "install" (and fastexec.install())."""
    value = os.environ.get(ENV_VAR)
    if value == "1":
        return "pool"
    if value == "install":
        return "install"
    return None


# The modules whose import triggers the patch, and those of them that are
# executing right now.  fastexec imports both (its C module reads asyncio at
# import), so it can only be imported once neither is half-initialised: when
# asyncio is imported first, it imports concurrent.futures half-way through,
# and the patch waits for asyncio to finish.
_TRIGGERS = (_TARGET, "asyncio")
_loading = set()
_busy = False
_done = False


def _try_patch():
    global _busy, _done
    if _done or _busy or _loading:
        return
    _busy = True
    try:
        # The import system binds a submodule on its parent package only
        # after exec_module returns; do it now, as code like ``import
        # concurrent.futures; concurrent.futures.X`` (fastexec's) needs it.
        cf_module = sys.modules.get(_TARGET)
        if cf_module is not None:
            sys.modules["concurrent"].futures = cf_module
        # fastexec subclasses the stdlib ThreadPoolExecutor, which it must see
        # before the names are replaced.
        import concurrent.futures as cf_module
        import concurrent.futures.thread as cf_thread

        import fastexec

        cls = fastexec.ThreadPoolExecutor
        cf_module.ThreadPoolExecutor = cls
        cf_thread.ThreadPoolExecutor = cls
        if patch_mode() == "install":
            fastexec.install()
        _done = True
    finally:
        _busy = False


class _PatchingLoader:
    """Wraps the loader of one of _TRIGGERS: runs it, then patches if the
    time has come.  Every other attribute (get_source, is_package, ...) is
    the original loader's."""

    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _loading.add(self._name)
        try:
            self._loader.exec_module(module)
        finally:
            _loading.discard(self._name)
        _try_patch()


class _Finder:
    """Meta path finder for _TRIGGERS, each once."""

    def __init__(self, names):
        self._names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._names:
            return None
        self._names.discard(fullname)
        if not self._names:
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
        import importlib.util
        spec = importlib.util.find_spec(fullname)  # no longer ours to find
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader, fullname)
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
    if patch_mode() is None:
        return
    missing = [name for name in _TRIGGERS if name not in sys.modules]
    if missing:
        sys.meta_path.insert(0, _Finder(missing))
    else:
        _try_patch()

"""Put on PYTHONPATH by ``pytest --fastexec`` (fastexec.pytest_plugin), so that
the Python subprocesses a test session starts run with ``fastexec.install()``
too.  Not used otherwise.

It takes its own directory off ``sys.path``, imports the ``sitecustomize`` it
shadows (the distribution's, if any), then installs fastexec as
``FASTEXEC_INSTALL`` says: ``install`` or ``pool``.  An interpreter that
can't import fastexec (another Python version) starts as usual.
"""

import os
import sys


def _run():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    me = sys.modules.pop(__name__)
    try:
        import sitecustomize  # noqa: F401  (the one this file shadows)
    except ImportError:
        # The import system expects to find this module when it is done.
        sys.modules[__name__] = me
    mode = os.environ.get("FASTEXEC_INSTALL")
    if mode not in ("install", "pool"):
        return
    try:
        import fastexec
    except ImportError:
        return
    fastexec.install(pool=(mode == "pool"))


_run()

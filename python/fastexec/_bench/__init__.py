"""``python -m fastexec bench``: fastexec against the stdlib.

One concern per module:

* ``app.py``          the HTTP app (server, bundled load client, wrk driver)
* ``starlette_app.py`` the Starlette app under uvicorn (the ``starlette``
  workload's server; app.py drives it and loads it)
* ``app_workload.py`` the app workloads and their contenders
* ``micro.py``        the micro-benchmarks and their contenders
* ``runner.py``       workloads, results, the interleaved rounds
* ``env.py``          optional modules, the machine, ``--load``
* ``report.py``       the table, JSON, the chart, goals read from a file
* ``cli.py``          the command line

The project's goals are not here: they are a data file
(``tools/bench_targets.json``) that ``--targets`` reads.
"""

from .cli import main

__all__ = ["main"]

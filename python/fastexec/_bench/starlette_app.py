"""The Starlette workload's server: a Starlette app with a sync endpoint doing
blocking work, served by uvicorn on 127.0.0.1.

This file is a script, run in child processes by the benchmark the way
app.py is (it shares app.py's data files, blocking calls, load client and
round driver; it imports nothing of fastexec unless its mode needs it)::

    python starlette_app.py serve --mode MODE --data DIR
        prints "READY <port>" once uvicorn accepts on http://127.0.0.1:<port>/,
        serves until its stdin closes, then prints "DONE <json>" (requests
        served, CPU time, the threads that ran the endpoint and how many
        requests each, uvicorn's HTTP implementation)

``GET /`` is one endpoint making app.py's four calls one after the other
(``os.stat`` of a 2 KB file, sha256 of 4 KB, read the 2 KB file, one sqlite3
query) and answering them as JSON.  The modes are the contenders:

* ``stdlib``: a sync endpoint, which Starlette runs in a worker thread
  (``run_in_threadpool``, that is ``anyio.to_thread.run_sync``): anyio's own
  worker threads;
* ``install``: the same app, ``fastexec.install()`` called before uvicorn
  starts: the endpoint runs on fastexec's anyio pool, through the fast path;
* ``inline``: the same calls in an async endpoint, on the loop's thread, no
  worker thread at all: the app's upper bound.

uvicorn runs on the stdlib's asyncio loop (``loop="asyncio"``, whatever else
is installed), its HTTP implementation as ``http="auto"`` picks it, with no
lifespan and no access log.
"""

import argparse
import inspect
import json
import os
import socket
import sys
import threading

try:
    from . import app as _app
except ImportError:         # run as a script: its directory is sys.path[0]
    import app as _app

MODES = ("stdlib", "install", "inline")


def make_app(mode, directory, counts):
    """The Starlette app; *counts* gets ``{thread name: requests}``."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    hops = _app._Hops(directory)
    lock = threading.Lock()
    served = [0]

    def work():
        name = threading.current_thread().name
        with lock:
            served[0] += 1
            n = served[0]
            counts[name] = counts.get(name, 0) + 1
        return {"size": hops.stat(), "digest": hops.digest(),
                "read": hops.read(), "value": hops.query(n % _app.ROWS + 1)}

    if mode == "inline":
        async def endpoint(request):
            return JSONResponse(work())
    else:
        def endpoint(request):          # sync: Starlette runs it in a thread
            return JSONResponse(work())

    return Starlette(routes=[Route("/", endpoint)])


def serve(mode, directory):
    if mode not in MODES:
        raise SystemExit("unknown mode %r" % (mode,))
    import uvicorn
    if mode == "install":
        import fastexec
        from fastexec import _anyio
        fastexec.install()
        if not (fastexec.installed() and _anyio.installed()):
            raise SystemExit("fastexec.install() did not hook anyio")
    counts = {}
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP (an accepted socket inherits the listener's 0 otherwise,
    # and Nagle's algorithm then holds every response back ~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    options = dict(loop="asyncio", http="auto", lifespan="off",
                   log_level="warning", access_log=False)
    if "timeout_graceful_shutdown" in inspect.signature(uvicorn.Config).parameters:
        options["timeout_graceful_shutdown"] = 10
    config = uvicorn.Config(make_app(mode, directory, counts), **options)

    class Server(uvicorn.Server):
        async def startup(self, *args, **kwargs):
            await super().startup(*args, **kwargs)
            if not self.should_exit:
                sys.stdout.write("READY %d\n" % port)
                sys.stdout.flush()

    server = Server(config)

    def stop_when_stdin_closes():
        sys.stdin.buffer.read()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    times = os.times()
    sys.stdout.write("DONE %s\n" % json.dumps({
        "served": sum(counts.values()),
        "cpu_seconds": times.user + times.system,
        "threads": counts,
        "http": config.http_protocol_class.__name__,
    }))
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--data", required=True)
    args = parser.parse_args(argv)
    serve(args.mode, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The app workload: a real HTTP server whose handler makes four thread hops.

This file is also a script, run in child processes by the benchmark (it
imports nothing of fastexec unless its mode needs it)::

    python app.py serve --mode MODE --data DIR [--hops real|noop]
        prints "READY <port>", serves http://127.0.0.1:<port>/ until its
        stdin closes, then prints "DONE <json>" (requests served, CPU time)
    python app.py load --port P --connections C --duration S --warmup S
        the bundled load client: C keep-alive connections, each sending its
        next GET as soon as the previous response is in; prints one JSON line

The handler, per request, one hop after the other (as an app's are):

1. ``os.stat`` of a 2 KB file          (``loop.run_in_executor(None, ...)``)
2. sha256 of a 4 KB buffer             (``loop.run_in_executor(None, ...)``)
3. read the 2 KB file                  (``asyncio.to_thread``)
4. one sqlite3 query by primary key    (``asyncio.to_thread``)

then it answers a small JSON document, on HTTP/1.1 keep-alive.  With
``--hops noop`` the four functions return the same values at once, touching
nothing: what is left of a thread hop is the bridge's own cost (the
``app-noop`` workload).  The modes are
the contenders: ``stdlib`` (that code, on the stdlib), ``install`` (the same
code after ``fastexec.install()``), ``pool`` (each hop ``await pool.run(...)``
on a ``fastexec.ThreadPoolExecutor``) and ``inline`` (the four calls made on the
loop's thread, no thread at all: the app's upper bound).
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time

MODES = ("stdlib", "install", "pool", "inline")
HOPS = ("real", "noop")
FILE_NAME = "payload.bin"
DB_NAME = "app.sqlite3"
FILE_SIZE = 2048
HASH_SIZE = 4096
ROWS = 1000


def make_data(directory):
    """The app's files: a 2 KB file and a sqlite3 table of ROWS rows."""
    with open(os.path.join(directory, FILE_NAME), "wb") as f:
        f.write(os.urandom(FILE_SIZE))
    db = sqlite3.connect(os.path.join(directory, DB_NAME))
    try:
        db.execute("CREATE TABLE IF NOT EXISTS kv "
                   "(id INTEGER PRIMARY KEY, value TEXT)")
        db.execute("DELETE FROM kv")
        db.executemany("INSERT INTO kv VALUES (?, ?)",
                       [(i, "value-%d" % i) for i in range(1, ROWS + 1)])
        db.commit()
    finally:
        db.close()


# --------------------------------------------------------------------------
# The server.

class _Hops:
    """The four blocking functions; each thread gets its own sqlite3
    connection (a connection is not shared between threads)."""

    def __init__(self, directory):
        self.path = os.path.join(directory, FILE_NAME)
        self.db_path = os.path.join(directory, DB_NAME)
        self.buffer = os.urandom(HASH_SIZE)
        self.local = threading.local()

    def stat(self):
        return os.stat(self.path).st_size

    def digest(self):
        return hashlib.sha256(self.buffer).hexdigest()[:16]

    def read(self):
        with open(self.path, "rb") as f:
            return len(f.read())

    def query(self, key):
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = sqlite3.connect(self.db_path)
        row = db.execute("SELECT value FROM kv WHERE id = ?", (key,)).fetchone()
        return row[0]


class _NoopHops:
    """The same four functions, returning what the real ones return at
    once, touching nothing (the same response, the same JSON to encode)."""

    def __init__(self, directory):
        self.digest_value = "0" * 16

    def stat(self):
        return FILE_SIZE

    def digest(self):
        return self.digest_value

    def read(self):
        return FILE_SIZE

    def query(self, key):
        return "value-%d" % key


def _respond_factory(mode, hops):
    """``respond(n) -> dict``, the handler's four hops for *mode*."""
    if mode == "inline":
        async def respond(n):
            return {"size": hops.stat(), "digest": hops.digest(),
                    "read": hops.read(), "value": hops.query(n % ROWS + 1)}
        return respond, None

    if mode == "pool":
        import fastexec
        pool = fastexec.ThreadPoolExecutor()

        async def respond(n):
            run = pool.run
            return {"size": await run(hops.stat),
                    "digest": await run(hops.digest),
                    "read": await run(hops.read),
                    "value": await run(hops.query, n % ROWS + 1)}
        return respond, pool

    # stdlib and install: the same code; install() changes what it calls.
    async def respond(n):
        loop = asyncio.get_running_loop()
        return {"size": await loop.run_in_executor(None, hops.stat),
                "digest": await loop.run_in_executor(None, hops.digest),
                "read": await asyncio.to_thread(hops.read),
                "value": await asyncio.to_thread(hops.query, n % ROWS + 1)}
    return respond, None


_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
         b"Content-Length: %d\r\n\r\n")


async def _serve(mode, directory, ready, hops_kind="real"):
    hops = (_NoopHops if hops_kind == "noop" else _Hops)(directory)
    respond, pool = _respond_factory(mode, hops)
    served = [0]
    stop = asyncio.Event()
    writers = set()

    async def handle(reader, writer):
        writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                served[0] += 1
                body = json.dumps(await respond(served[0])).encode()
                writer.write(_HEAD % len(body) + body)
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError,
                asyncio.LimitOverrunError):
            pass
        finally:
            writers.discard(writer)
            writer.close()

    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    # Stop when the parent closes our stdin (or dies).
    reader_thread = threading.Thread(
        target=lambda: (sys.stdin.buffer.read(),
                        loop.call_soon_threadsafe(stop.set)),
        daemon=True)
    reader_thread.start()
    ready(port)
    async with server:
        await stop.wait()
        # Connections a client left open would keep wait_closed() waiting.
        for writer in list(writers):
            writer.close()
    if pool is not None:
        pool.shutdown(wait=True)
    return served[0]


def serve(mode, directory, hops="real"):
    if mode not in MODES:
        raise SystemExit("unknown mode %r" % (mode,))
    if hops not in HOPS:
        raise SystemExit("unknown hops %r" % (hops,))
    if mode == "install":
        import fastexec
        fastexec.install()
        if not fastexec.installed():
            raise SystemExit("fastexec.install() did not take")

    def ready(port):
        sys.stdout.write("READY %d\n" % port)
        sys.stdout.flush()

    served = asyncio.run(_serve(mode, directory, ready, hops))
    times = os.times()
    sys.stdout.write("DONE %s\n" % json.dumps({
        "served": served, "cpu_seconds": times.user + times.system,
        "hops": hops}))
    sys.stdout.flush()


# --------------------------------------------------------------------------
# The bundled load client (used when wrk is not installed).

_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: the next GET leaves as soon as the previous
    response is complete."""

    def __init__(self, stats, request):
        self.stats = stats
        self.request = request
        self.buffer = b""
        self.sent_at = 0.0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.send()

    def send(self):
        if self.stats["stopped"]:
            self.transport.close()
            return
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self.buffer, 0, end)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            ok = self.buffer.startswith(b"HTTP/1.1 200")
            self.buffer = self.buffer[total:]
            stats = self.stats
            if stats["measuring"]:
                stats["requests"] += 1
                if not ok:
                    stats["non_2xx"] += 1
                stats["latencies"].append(time.perf_counter() - self.sent_at)
            self.send()

    def connection_lost(self, exc):
        if not self.stats["stopped"]:
            self.stats["errors"] += 1


async def _load(port, connections, duration, warmup):
    loop = asyncio.get_running_loop()
    stats = {"requests": 0, "non_2xx": 0, "errors": 0, "latencies": [],
             "measuring": False, "stopped": False}
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               b"User-Agent: fastexec-bench\r\n\r\n" % port)
    transports = []
    for _ in range(connections):
        transport, _protocol = await loop.create_connection(
            lambda: _Connection(stats, request), "127.0.0.1", port)
        transports.append(transport)
    await asyncio.sleep(warmup)
    stats["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    stats["measuring"] = False
    seconds = time.perf_counter() - t0
    stats["stopped"] = True
    for transport in transports:
        transport.close()
    await asyncio.sleep(0)
    latencies = sorted(stats["latencies"])
    return {
        "requests": stats["requests"],
        "seconds": seconds,
        "requests_per_second": stats["requests"] / seconds,
        "non_2xx": stats["non_2xx"],
        "errors": stats["errors"],
        "latency_p50_ms": _quantile(latencies, 0.50) * 1e3,
        "latency_p99_ms": _quantile(latencies, 0.99) * 1e3,
    }


def _quantile(ordered, q):
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(port, connections, duration, warmup):
    result = asyncio.run(_load(port, connections, duration, warmup))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Driving one round from the benchmark's process.

_APP = os.path.abspath(__file__)
# The directory that holds the fastexec package, for the children's sys.path.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(_APP)))


class RoundError(Exception):
    pass


def find_wrk():
    """The wrk executable, or None."""
    import shutil
    return shutil.which("wrk")


def wrk_version(path):
    import subprocess
    try:
        proc = subprocess.run([path, "--version"], capture_output=True,
                              text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (proc.stdout + proc.stderr).split("\n")[0]
    match = re.search(r"wrk\s+(\S+)", text)
    return match.group(1) if match else "?"


def _child_env():
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + path if path else "")
    return env


def _readline(proc, deadline):
    import select
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RoundError("the server did not answer in time")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RoundError("the server exited: %s" % _stderr_tail(proc))
            return line


def _stderr_tail(proc):
    try:
        proc.wait(timeout=5)
        text = proc.stderr.read().decode(errors="replace").strip()
    except Exception:
        text = ""
    return text.splitlines()[-1] if text else "exit %s" % proc.returncode


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_wrk(text):
    """wrk's summary (run with --latency) as a dict; RoundError if it has none."""
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.MULTILINE)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if rps is None or done is None:
        raise RoundError("wrk printed no summary: %r" % text[-300:])
    result = {
        "requests": int(done.group(1)),
        "seconds": _ms(done.group(2) + done.group(3)) / 1e3,
        "requests_per_second": float(rps.group(1)),
        "non_2xx": 0, "errors": 0,
        "latency_p50_ms": None, "latency_p99_ms": None,
    }
    match = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if match:
        result["non_2xx"] = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                      r"timeout (\d+)", text)
    if match:
        result["errors"] = sum(int(g) for g in match.groups())
    for q, key in (("50", "latency_p50_ms"), ("99", "latency_p99_ms")):
        match = re.search(r"^\s*%s(?:\.0+)?%%\s+(\S+)" % q, text, re.MULTILINE)
        if match:
            result[key] = _ms(match.group(1))
    return result


def _run_load(client, port, connections, duration, warmup):
    import subprocess
    timeout = warmup + duration + 30
    if client is not None:                  # wrk
        url = "http://127.0.0.1:%d/" % port
        if warmup > 0:
            # wrk has no warm-up: a first, short run that is not counted.
            subprocess.run([client, "-t1", "-c%d" % connections,
                            "-d%ds" % max(1, round(warmup)), url],
                           capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        proc = subprocess.run(
            [client, "-t1", "-c%d" % connections,
             "-d%ds" % max(1, round(duration)), "--latency", "--timeout", "10s",
             url], capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RoundError("wrk exit %s: %s" % (proc.returncode,
                                                  proc.stderr.strip()[-300:]))
        return parse_wrk(proc.stdout)
    proc = subprocess.run(
        [sys.executable, _APP, "load", "--port", str(port),
         "--connections", str(connections), "--duration", str(duration),
         "--warmup", str(warmup)],
        capture_output=True, text=True, timeout=timeout, env=_child_env(),
        stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RoundError("the load client failed: %s"
                         % proc.stderr.strip()[-300:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_round(mode, data_dir, connections, duration, warmup, wrk=None,
              script=None, hops="real"):
    """One round: start the server in *mode*, load it, stop it.

    Returns the load's dict (requests_per_second, latencies, errors) plus the
    server's CPU seconds (and whatever else its DONE line says, as
    ``server_<key>``).  wrk is the wrk executable, or None for the bundled
    client.  script is the server's script (``serve --mode --data``, the
    protocol of this one, which is the default); hops="noop" asks this one
    for its no-op hops.
    """
    import subprocess
    command = [sys.executable, script or _APP, "serve", "--mode", mode,
               "--data", data_dir]
    if hops != "real":
        command += ["--hops", hops]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_child_env())
    try:
        line = _readline(proc, time.monotonic() + 60).decode()
        if not line.startswith("READY "):
            raise RoundError("unexpected line from the server: %r" % line)
        port = int(line.split()[1])
        result = _run_load(wrk, port, connections, duration, warmup)
        proc.stdin.close()
        line = _readline(proc, time.monotonic() + 30).decode()
        if not line.startswith("DONE "):
            raise RoundError("unexpected line from the server: %r" % line)
        server = json.loads(line[5:])
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
    if result["non_2xx"] or result["errors"]:
        raise RoundError("%d non-2xx responses, %d socket errors"
                         % (result["non_2xx"], result["errors"]))
    if not result["requests"]:
        raise RoundError("no request completed")
    # The server's whole life (start-up and warm-up included).
    result["server_cpu_seconds"] = server["cpu_seconds"]
    result["server_requests"] = server["served"]
    result["server_cpu_ms_per_request"] = (
        1e3 * server["cpu_seconds"] / max(1, server["served"]))
    for key, value in server.items():
        if key not in ("served", "cpu_seconds"):
            result["server_" + key] = value
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--hops", choices=HOPS, default="real")
    p = commands.add_parser("load")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--warmup", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.mode, args.data, args.hops)
    else:
        load(args.port, args.connections, args.duration, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())

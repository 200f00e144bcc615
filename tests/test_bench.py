"""``python -m fastexec bench``: the command works and its outputs are whole.

Only what the command prints and writes is checked here, never a figure:
timings are the benchmark's business, not the test suite's.  The runs are
the smallest the command allows (one round, a fraction of a second of HTTP
load, a few workloads), so they take seconds.
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(240)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(REPO, "tools", "bench_targets.json")
APP_CONTENDERS = ["stdlib", "install()", "fastexec pool", "inline (no thread)"]
TINY_APP = ["--rounds", "1", "--duration", "0.3", "--warmup", "0.1",
            "--no-progress"]


def run_bench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastexec", *args],
                          capture_output=True, text=True, timeout=230,
                          env=env, stdin=subprocess.DEVNULL)


def check_ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout, proc.stdout
    return proc.stdout


def rows_of(data):
    return {(r["workload"], r["contender"]): r for r in data["results"]}


def check_row(row, rounds=1):
    assert row["error"] is None, row
    assert len(row["rounds"]) == rounds, row
    assert row["median"] > 0 and row["min"] <= row["median"] <= row["max"], row
    assert row["unit"] and row["better"] in ("higher", "lower"), row


def test_micro_quick_run_writes_table_json_plot_and_goals(tmp_path):
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    text = check_ok(run_bench(
        "bench", "--quick", "--rounds", "2", "--no-progress",
        "--only", "micro",
        "--json", str(out), "--plot", str(plot), "--targets", TARGETS))
    # What a first-time reader needs: the Python, the machine, idle or
    # loaded, units and which way is better.
    assert "Python %d.%d" % sys.version_info[:2] in text
    assert "%d CPUs" % os.cpu_count() in text
    assert "idle: no load added" in text
    assert "quick mode" in text
    assert "round trip no-op  (%s, lower is better)" % (
        "\u00b5s/call" if "\u00b5s/call" in text else "us/call") in text
    assert "gathered no-op  (calls/s, higher is better)" in text
    for name in ("stdlib", "fast path", "drop-in", "stdlib pool",
                 "fastexec pool", "bare threads", "limit (no thread)"):
        assert "\n  " + name + " " in text, name
    assert "baseline" in text and "vs stdlib" in text
    assert "one time.sleep(0.001) takes" in text
    assert "the project's goals, from %s" % TARGETS in text
    assert "MISS" not in text and "PASS" not in text
    data = json.loads(out.read_text())
    meta = data["meta"]
    assert meta["mode"] == "quick" and meta["load"] == 0
    assert meta["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert meta["one_sleep_ms"] > 0 and meta["rounds"] == 2
    rows = rows_of(data)
    for key in [("roundtrip", "stdlib"), ("roundtrip", "fast path"),
                ("roundtrip", "drop-in"), ("gather-noop", "limit (no thread)"),
                ("cf-map", "fastexec pool"), ("memory", "fast path"),
                ("sleep", "bare threads"), ("sha256", "serial (no pool)"),
                ("sha256", "fast path"), ("gather-stat", "fast path"),
                ("cf-submit", "fastexec pool"), ("cpu-500", "fast path"),
                ("cpu-8000", "stdlib")]:
        check_row(rows[key], rounds=2)
        assert len(rows[key]["vs_baseline_rounds"]) in (0, 2)
    assert rows[("roundtrip", "stdlib")]["vs_baseline"] == 1.0
    idle = rows[("idle", "fast path")]
    assert idle["error"] is None and len(idle["rounds"]) == 2
    assert idle["unit"] == "ms/s" and idle["median"] >= 0
    assert rows[("gather-noop", "limit (no thread)")]["reference"] is True
    assert rows[("roundtrip", "fast path")]["vs_baseline_words"].endswith(
        ("faster", "slower", "same"))
    with open(TARGETS) as f:
        assert len(data["targets"]) == len(json.load(f)["targets"])
    statuses = [t["status"] for t in data["targets"]]
    assert set(statuses) <= {"met", "not met", "not measured"}
    assert "not measured" in statuses     # the app did not run, nor --load
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
        assert not plot.exists()
    else:
        assert "wrote %s" % plot in text
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_app_workload_with_the_bundled_client(tmp_path):
    out = tmp_path / "app.json"
    text = check_ok(run_bench("bench", "--only", "app,app-1", "--client",
                              "bundled", "--connections", "4", *TINY_APP,
                              "--json", str(out)))
    assert "HTTP load from: the bundled asyncio load client" in text
    assert "HTTP app, 4 connections  (req/s, higher is better)" in text
    assert "HTTP app, 1 connection  (req/s, higher is better)" in text
    assert "of inline" in text
    data = json.loads(out.read_text())
    assert data["meta"]["http_client"].startswith("the bundled")
    rows = rows_of(data)
    for workload, size in (("app", 4), ("app-1", 1)):
        for name in APP_CONTENDERS:
            row = rows[(workload, name)]
            check_row(row)
            assert row["size"] == size and row["unit"] == "req/s"
            extras = row["extras"][0]
            assert extras["client"] == "bundled"
            assert extras["requests"] > 0 and extras["errors"] == 0
            assert extras["non_2xx"] == 0
            assert extras["server_requests"] >= extras["requests"]
            assert extras["latency_p50_ms"] > 0
        assert rows[(workload, "inline (no thread)")]["reference"] is True
        assert data["contenders"]["install()"]


def test_app_noop_workload(tmp_path):
    """The same server with no-op hops (opt-in): the bridge's share of the
    app.  Its servers really ran the no-op hops, the app's the real ones."""
    out = tmp_path / "noop.json"
    text = check_ok(run_bench("bench", "--only", "app,app-noop", "--client",
                              "bundled", "--connections", "4", *TINY_APP,
                              "--json", str(out)))
    assert "HTTP app, no-op hops, 4 connections  (req/s, higher is better)" \
        in text
    assert "app.py --hops noop" in text
    rows = rows_of(json.loads(out.read_text()))
    for name in APP_CONTENDERS:
        for workload, hops in (("app", "real"), ("app-noop", "noop")):
            row = rows[(workload, name)]
            check_row(row)
            extras = row["extras"][0]
            assert extras["server_hops"] == hops, (workload, name)
            assert extras["requests"] > 0 and extras["errors"] == 0
            assert extras["non_2xx"] == 0
    assert rows[("app-noop", "inline (no thread)")]["reference"] is True


def test_app_noop_hops_answer_like_the_real_ones(tmp_path):
    """Same response for the same request, from either set of hops (the
    same JSON to encode: only the hops' work differs)."""
    from fastexec._bench import app
    app.make_data(str(tmp_path))
    real, noop = app._Hops(str(tmp_path)), app._NoopHops(str(tmp_path))
    assert real.stat() == noop.stat() == app.FILE_SIZE
    assert real.read() == noop.read() == app.FILE_SIZE
    assert len(real.digest()) == len(noop.digest()) == 16
    try:
        for key in (1, 500, app.ROWS):
            assert real.query(key) == noop.query(key) == "value-%d" % key
    finally:
        # This thread's connection: left open, 3.13+ warns when it is
        # collected (an error under -W error, in whatever test runs then).
        real.local.db.close()
    with pytest.raises(SystemExit):
        app.serve("inline", str(tmp_path), hops="bogus")


STARLETTE_CONTENDERS = ["stdlib", "install()", "inline (no thread)"]


def test_starlette_workload_with_the_bundled_client(tmp_path):
    """Starlette under uvicorn, each round a server process of its own: the
    stdlib's anyio threads, install()'s pool, the async endpoint."""
    out = tmp_path / "starlette.json"
    text = check_ok(run_bench("bench", "--only", "starlette", "--client",
                              "bundled", "--connections", "4", *TINY_APP,
                              "--json", str(out)))
    assert "HTTP load from: the bundled asyncio load client" in text
    assert "Starlette app, 4 connections  (req/s, higher is better)" in text
    assert "of inline" in text
    assert "NOT RUN" not in text
    data = json.loads(out.read_text())
    assert set(data["meta"]["versions"]) >= {"starlette", "uvicorn"}
    assert data["meta"]["not_run"] == {}
    rows = rows_of(data)
    assert {w for w, _ in rows} == {"starlette"}
    threads = {}
    for name in STARLETTE_CONTENDERS:
        row = rows[("starlette", name)]
        check_row(row)
        assert row["size"] == 4 and row["unit"] == "req/s"
        assert "uvicorn" in row["description"]
        extras = row["extras"][0]
        assert extras["client"] == "bundled"
        assert extras["requests"] > 0 and extras["errors"] == 0
        assert extras["non_2xx"] == 0
        assert extras["server_requests"] >= extras["requests"]
        assert extras["server_requests"] == sum(extras["server_threads"].values())
        assert extras["server_http"] in ("H11Protocol", "HttpToolsProtocol")
        threads[name] = set(extras["server_threads"])
        assert data["contenders"]["starlette: " + name]
    # Where the endpoint ran: anyio's own worker threads, fastexec's anyio
    # pool after install(), the loop's thread for the async endpoint.
    assert threads["stdlib"] == {"AnyIO worker thread"}
    assert threads["install()"] and all(
        t.startswith("AnyIO worker thread (fastexec)")
        for t in threads["install()"]), threads
    assert threads["inline (no thread)"] == {"MainThread"}
    assert rows[("starlette", "inline (no thread)")]["reference"] is True
    assert rows[("starlette", "stdlib")]["vs_baseline"] == 1.0


def test_starlette_workload_is_reported_not_run_without_starlette(tmp_path):
    fake = tmp_path / "site" / "starlette"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('starlette hidden by the test')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(fake.parent) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = tmp_path / "none.json"
    text = check_ok(run_bench("bench", "--only", "starlette", "--client",
                              "bundled", *TINY_APP, "--json", str(out),
                              env=env))
    assert ("skipped: contenders needing starlette (starlette does not "
            "import (starlette hidden by the test)") in text
    assert "Starlette app, 32 connections: NOT RUN: starlette does not " \
           "import" in text
    data = json.loads(out.read_text())
    assert data["results"] == []
    not_run = data["meta"]["not_run"]["starlette"]
    assert not_run["all"] is True
    assert not_run["contenders"] == STARLETTE_CONTENDERS
    assert "starlette hidden by the test" in not_run["reasons"]["starlette"]


def test_starlette_runs_only_when_named():
    from fastexec._bench import cli
    parser = cli.build_parser()
    assert "starlette" not in cli._select(parser, None)
    assert "app-noop" not in cli._select(parser, None)
    assert "app" in cli._select(parser, None)
    assert cli._select(parser, "app-noop,app") == ["app", "app-noop"]
    assert cli._select(parser, "starlette,app") == ["app", "starlette"]


FAKE_WRK = textwrap.dedent("""\
    #!%s
    # A stand-in for wrk where it is not installed: one real GET to the URL,
    # then wrk's summary (the numbers are made up; only the format matters).
    import sys, urllib.request
    if sys.argv[1:] == ["--version"]:
        print("wrk 4.1.0 [fake] Copyright (C) 2012 Will Glozer"); sys.exit(1)
    body = urllib.request.urlopen(sys.argv[-1], timeout=10).read()
    assert body.startswith(b"{"), body
    print('''Running 1s test @ %%s
      1 threads and 4 connections
      Latency Distribution
         50%%%%  144.00us
         75%%%%    1.01ms
         90%%%%    2.46ms
         99%%%%    4.88ms
      1234 requests in 1.00s, 1.98MB read
    Requests/sec:   1234.00
    Transfer/sec:      1.97MB''' %% sys.argv[-1])
    """)


def test_app_workload_with_wrk(tmp_path):
    """Real wrk when it is installed, else a stand-in that talks to the
    server once and prints wrk's format (the driver is tested either way)."""
    env = dict(os.environ)
    real = any(os.access(os.path.join(d, "wrk"), os.X_OK)
               for d in env.get("PATH", "").split(os.pathsep) if d)
    if not real:
        fake = tmp_path / "bin" / "wrk"
        fake.parent.mkdir()
        fake.write_text(FAKE_WRK % sys.executable)
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        env["PATH"] = str(fake.parent) + os.pathsep + env.get("PATH", "")
    out = tmp_path / "wrk.json"
    text = check_ok(run_bench("bench", "--only", "app", "--client", "wrk",
                              "--connections", "4", "--rounds", "1",
                              "--duration", "1", "--warmup", "0",
                              "--no-progress", "--json", str(out), env=env))
    assert "HTTP load from: wrk " in text
    rows = rows_of(json.loads(out.read_text()))
    for name in APP_CONTENDERS:
        row = rows[("app", name)]
        check_row(row)
        assert row["extras"][0]["client"] == "wrk"
        assert row["extras"][0]["latency_p99_ms"] > 0


def test_load_processes_run_beside_and_end_with_the_run(tmp_path):
    out = tmp_path / "load.json"
    text = check_ok(run_bench("bench", "--load", "1", "--only",
                              "app-1,roundtrip", "--quick", "--client",
                              "bundled", *TINY_APP, "--json", str(out),
                              "--targets", TARGETS))
    assert "LOADED: 1 CPU-bound process spinning beside the benchmark" in text
    assert "idle: no load added" not in text
    data = json.loads(out.read_text())
    assert data["meta"]["load"] == 1
    assert data["meta"]["load_processes_alive_at_end"] == 1
    (pid,) = data["meta"]["load_pids"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)       # stopped (and reaped) by the command
    rows = rows_of(data)
    check_row(rows[("roundtrip", "fast path")])
    check_row(rows[("app-1", "install()")])
    by_text = {t["target"]: t for t in data["targets"]}
    loaded = [t for t in by_text.values() if t["load"] == 1]
    assert loaded and all(t["status"] != "not measured" for t in loaded)
    idle = [t for t in by_text.values()
            if t["load"] == 0 and t["workload"] == "roundtrip"]
    assert idle and all(t["status"] == "not measured" for t in idle)


def test_time_limit_keeps_the_rounds_done(tmp_path):
    out = tmp_path / "limit.json"
    text = check_ok(run_bench("bench", "--only", "roundtrip", "--quick",
                              "--rounds", "50", "--time-limit", "0.01",
                              "--no-progress", "--json", str(out)))
    assert "warning: --time-limit 0.01 s reached" in text
    rows = rows_of(json.loads(out.read_text()))
    for name in ("stdlib", "fast path"):
        check_row(rows[("roundtrip", name)], rounds=1)


@pytest.mark.parametrize("args, message", [
    (["--only", "roundtrip,nope"], "unknown workload(s) nope"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--load", "-1"], "--load must be 0 or more"),
    (["--duration", "0"], "--duration must be above 0"),
    (["--targets", os.devnull], "--targets:"),
])
def test_bench_refuses_bad_options(args, message):
    proc = run_bench("bench", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_bench_refuses_wrk_when_it_is_missing(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    proc = run_bench("bench", "--only", "app", "--client", "wrk", env=env)
    assert proc.returncode == 2
    assert "wrk is not on PATH" in proc.stderr


def test_command_usage():
    proc = run_bench()
    assert proc.returncode == 2 and "usage: python -m fastexec" in proc.stdout
    proc = run_bench("--help")
    assert proc.returncode == 0 and "bench" in proc.stdout
    proc = run_bench("nope")
    assert proc.returncode == 2 and "unknown command: 'nope'" in proc.stderr
    proc = run_bench("bench", "--help")
    assert proc.returncode == 0
    for option in ("--load", "--duration", "--client", "--time-limit",
                   "--targets", "--json", "--plot"):
        assert option in proc.stdout


# --------------------------------------------------------------------------
# The report's pieces, directly.

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:41687/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   767.56us    1.14ms   8.67ms   84.93%
    Req/Sec    13.79k     3.73k   24.33k    90.00%
  Latency Distribution
     50%  144.00us
     75%    1.01ms
     90%    2.46ms
     99%    4.88ms
  13772 requests in 1.00s, 1.98MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:  13704.60
Transfer/sec:      1.97MB
"""


def test_parse_wrk():
    from fastexec._bench import app
    result = app.parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 13772
    assert result["requests_per_second"] == 13704.60
    assert result["seconds"] == 1.0
    assert result["latency_p50_ms"] == pytest.approx(0.144)
    assert result["latency_p99_ms"] == pytest.approx(4.88)
    assert result["non_2xx"] == 3 and result["errors"] == 3
    with pytest.raises(app.RoundError):
        app.parse_wrk("wrk: connection refused\n")


def _result(workload, contender, rounds):
    from fastexec._bench.runner import Result
    r = Result(workload, contender, 10, 2)
    r.rounds = list(rounds)
    return r


def _workload(better="higher", unit="calls/s"):
    from fastexec._bench.runner import Workload
    return Workload("w", "a workload", unit, better, ["stdlib", "ours"],
                    None, None, 10, 10)


def test_ratios_say_slower_when_slower():
    from fastexec._bench import report
    w = _workload(better="lower", unit="us/call")
    base = _result(w, "stdlib", [10.0, 10.0, 10.0])
    slow = _result(w, "ours", [30.0, 31.0, 29.0])
    fast = _result(w, "ours", [5.0, 4.0, 6.0])
    assert report.versus([base, slow], slow)[0].startswith("3.00\u00d7 slower") \
        or report.versus([base, slow], slow)[0].startswith("3.00x slower")
    assert "faster" in report.versus([base, fast], fast)[0]
    assert report.versus([base], base) == ("baseline", False)
    mixed = _result(w, "ours", [5.0, 20.0, 9.0])
    assert report.versus([base, mixed], mixed)[1] is True    # unclear
    mem = _workload(better="lower", unit="B/call")
    assert report.ratio_words(2.0, mem).endswith("smaller")
    assert report.ratio_words(0.5, mem).endswith("larger")


def test_targets_follow_the_load_they_name():
    from fastexec._bench import report
    w = _workload()
    results = [_result(w, "stdlib", [100.0]), _result(w, "ours", [300.0])]
    target = {"text": "t", "workload": "w", "ours": "ours", "theirs": "stdlib",
              "op": ">=", "threshold": 2.0}
    assert report.evaluate_target(target, results, 0)[:2] == ("met", 3.0)
    assert report.evaluate_target(dict(target, threshold=4), results,
                                  0)[0] == "not met"
    status, _, detail = report.evaluate_target(dict(target, load=1),
                                               results, 0)
    assert status == "not measured" and "--load 1" in detail
    assert report.evaluate_target(dict(target, ours="gone"), results,
                                  0)[0] == "not measured"
    assert report.evaluate_target(dict(target, invert=True, op="<=",
                                       threshold=0.5), results, 0)[0] == "met"


def test_the_project_targets_file_is_valid():
    from fastexec._bench import report
    targets = report.load_targets(TARGETS)
    assert any(t["workload"] == "app" for t in targets)
    assert any(t.get("load") == 1 for t in targets)

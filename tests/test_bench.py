"""``python -m fastexec bench``: the command works and its outputs are whole.

Only what the command prints and writes is checked here, never a figure:
timings are the benchmark's business, not the test suite's.  The runs are
the smallest the command allows (``--quick --rounds 1`` and a few
workloads), so they take seconds.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)


def run_bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastexec", *args],
                          capture_output=True, text=True, timeout=170,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def test_bench_quick_run_writes_table_json_and_targets(tmp_path):
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    proc = run_bench("bench", "--quick", "--rounds", "1", "--no-progress",
                     "--only", "roundtrip,cf-map,memory,sleep",
                     "--json", str(out), "--plot", str(plot))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    # The header names the Python, the CPU count and the machine.
    assert "Python %d.%d" % sys.version_info[:2] in text
    assert "os.cpu_count() = %d" % os.cpu_count() in text
    # One row per contender, each with a figure and its ratio.
    for name in ("stdlib", "fast path", "drop-in", "stdlib pool",
                 "fastexec pool", "bare threads"):
        assert "  " + name + " " in text, name
    assert "baseline" in text and "vs stdlib" in text
    assert "ERROR" not in text
    assert "one time.sleep(0.001) takes" in text
    assert "targets (ratios are ours/theirs of the medians):" in text
    data = json.loads(out.read_text())
    assert data["meta"]["mode"] == "quick"
    assert data["meta"]["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert data["meta"]["one_sleep_ms"] > 0
    rows = {(r["workload"], r["contender"]): r for r in data["results"]}
    for key in [("roundtrip", "stdlib"), ("roundtrip", "fast path"),
                ("cf-map", "fastexec pool"), ("memory", "fast path"),
                ("sleep", "bare threads")]:
        row = rows[key]
        assert row["error"] is None, row
        assert len(row["rounds"]) == 1 and row["median"] > 0, row
    assert rows[("roundtrip", "stdlib")]["vs_baseline"] == 1.0
    statuses = {t["target"]: t["status"] for t in data["targets"]}
    assert len(statuses) == 12
    assert set(statuses.values()) <= {"PASS", "MISS", "SKIP"}
    # Targets whose workloads did not run say so.
    assert any(s == "SKIP" for s in statuses.values())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
        assert not plot.exists()
    else:
        assert "wrote %s" % plot in text
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_refuses_an_unknown_workload():
    proc = run_bench("bench", "--only", "roundtrip,nope")
    assert proc.returncode == 2
    assert "unknown workload(s) nope" in proc.stderr
    assert "roundtrip" in proc.stderr        # the valid names are listed


def test_bench_refuses_zero_rounds():
    proc = run_bench("bench", "--rounds", "0")
    assert proc.returncode == 2
    assert "--rounds must be at least 1" in proc.stderr


def test_command_usage():
    proc = run_bench()
    assert proc.returncode == 2 and "usage: python -m fastexec" in proc.stdout
    proc = run_bench("--help")
    assert proc.returncode == 0 and "bench" in proc.stdout
    proc = run_bench("nope")
    assert proc.returncode == 2 and "unknown command: 'nope'" in proc.stderr

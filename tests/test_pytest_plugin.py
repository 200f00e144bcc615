"""The pytest plugin (``pytest --fastexec[=pool]``), run for real: a small
project of the test's own, through ``python -m pytest`` in a subprocess,
with the plugin found through its ``pytest11`` entry point."""

import os
import subprocess
import sys

import pytest

PROJECT_TEST = '''
import asyncio
import builtins
import concurrent.futures
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor  # bound at import

import fastexec

EXPECT = os.environ["EXPECT"]

PROBE = """
import asyncio, builtins, concurrent.futures, json, fastexec
async def main():
    await asyncio.to_thread(int)
    return type(asyncio.get_running_loop()._default_executor).__module__
print(json.dumps([fastexec.installed(),
                  concurrent.futures.ThreadPoolExecutor is fastexec.ThreadPoolExecutor,
                  asyncio.run(main()),
                  getattr(builtins, "OWN_SITECUSTOMIZE", False)]))
"""


def test_in_process():
    assert fastexec.installed() == (EXPECT != "off")
    assert (ThreadPoolExecutor is fastexec.ThreadPoolExecutor) == (EXPECT == "pool")
    async def main():
        await asyncio.get_running_loop().run_in_executor(None, int)
        return type(asyncio.get_running_loop()._default_executor)
    kind = asyncio.run(main())
    assert (kind is fastexec.ThreadPoolExecutor) == (EXPECT != "off")


def test_subprocess():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    installed, replaced, module, own = json.loads(out)
    assert installed == (EXPECT != "off")
    assert replaced == (EXPECT == "pool")
    assert module == ("fastexec" if EXPECT != "off" else "concurrent.futures.thread")
    # A sitecustomize of the project's own still runs (it is chained).
    assert own == (os.environ.get("OWN") == "1")
'''


def run_pytest(tmp_path, expect, *args, own_sitecustomize=False):
    (tmp_path / "test_project.py").write_text(PROJECT_TEST)
    env = dict(os.environ)
    for key in ("PYTEST_ADDOPTS", "PYTHONPATH", "FASTEXEC_INSTALL",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(key, None)
    env["EXPECT"] = expect
    if own_sitecustomize:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            "import builtins\nbuiltins.OWN_SITECUSTOMIZE = True\n")
        env["PYTHONPATH"] = str(site)
        env["OWN"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("expect, args", [
    ("off", ["test_project.py"]),
    ("install", ["test_project.py", "--fastexec"]),
    ("install", ["--fastexec=install", "test_project.py"]),
    ("pool", ["--fastexec=pool", "test_project.py"]),
])
def test_plugin_session(tmp_path, expect, args):
    proc = run_pytest(tmp_path, expect, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout
    # The header says so, so that two runs can be told apart.
    header = "install(%s) in effect" % ("pool=True" if expect == "pool" else "")
    assert (header in proc.stdout) == (expect != "off"), proc.stdout
    assert ("in effect" in proc.stdout) == (expect != "off"), proc.stdout


def test_plugin_chains_own_sitecustomize(tmp_path):
    proc = run_pytest(tmp_path, "pool", "--fastexec=pool", "test_project.py",
                      own_sitecustomize=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout


def test_plugin_bad_value(tmp_path):
    proc = run_pytest(tmp_path, "off", "--fastexec", "test_project.py")
    # A bare --fastexec takes the next word, as pytest-cov's --cov does:
    # a clear usage error, not a silent run.
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--fastexec takes no value or =pool" in proc.stderr, proc.stderr

"""Packaging: tools/build_wheels.sh builds a manylinux wheel for the running
Python that installs and works in a fresh venv with no compiler and no index;
the sdist carries docs/ and the LICENSE; the version is defined once."""

import email.parser
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import fastexec

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "build_wheels.sh"
TAG = "cp%d%d" % sys.version_info[:2]

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="manylinux wheels are built on Linux"),
    # The sanitized run (make asan, tools/run_all.py) tests the sanitized
    # extension; the packaging is checked by the normal runs.
    pytest.mark.skipif(bool(os.environ.get("FASTEXEC_SANITIZED")),
                       reason="packaging is checked in the unsanitized runs"),
]


def build(out, *args):
    env = dict(os.environ)
    for key in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONPATH"):
        env.pop(key, None)
    proc = subprocess.run(["bash", str(SCRIPT), "-o", str(out), *args],
                          capture_output=True, text=True, timeout=840, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-6000:]
    return proc.stdout.split()


@pytest.mark.timeout(900)
def test_manylinux_wheel_installs_without_compiler(tmp_path):
    printed = build(tmp_path / "out", sys.executable)
    assert len(printed) == 1, printed
    wheel = Path(printed[0])
    assert re.fullmatch(r"fastexec_bridge-%s-%s-%s-manylinux_2_\d+_x86_64\.whl"
                        % (re.escape(fastexec.__version__), TAG, TAG), wheel.name), wheel
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = zf.read("fastexec_bridge-%s.dist-info/WHEEL" % fastexec.__version__).decode()
        entry_points = zf.read("fastexec_bridge-%s.dist-info/entry_points.txt"
                               % fastexec.__version__).decode()
    assert "Tag: %s-%s-manylinux_2_" % (TAG, TAG) in info, info
    assert "linux_x86_64" not in info.replace("manylinux_", ""), info
    assert any(n.startswith("fastexec/_fastexec.") and n.endswith(".so") for n in names)
    for name in ("fastexec/py.typed", "fastexec/pytest_plugin.py",
                 "fastexec/pytest-site/sitecustomize.py"):
        assert name in names, names
    assert "fastexec = fastexec.pytest_plugin" in entry_points, entry_points

    # Our own check, apart from the script's: a fresh venv, nothing to
    # compile with, nothing to download.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = dict(os.environ, CC="false", CXX="false", PIP_NO_INDEX="1")
    env.pop("PYTHONPATH", None)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps",
                    "--only-binary=:all:", str(wheel)], check=True, env=env, timeout=300)
    code = ("import asyncio, sys, fastexec\n"
            "assert fastexec.__file__.startswith(sys.prefix), fastexec.__file__\n"
            "fastexec.install()\n"
            "async def main():\n"
            "    return await asyncio.to_thread(sum, [1, 2])\n"
            "assert asyncio.run(main()) == 3\n"
            "assert fastexec.status()['installed'] is True\n"
            "print(fastexec.__version__)\n")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == fastexec.__version__ + "\n"


@pytest.mark.timeout(600)
def test_sdist_carries_docs_and_license_and_one_version(tmp_path):
    build(tmp_path, "--sdist-only", sys.executable)
    (sdist,) = tmp_path.glob("fastexec_bridge-*.tar.gz")
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        names = {n[len(top) + 1:] for n in tf.getnames()}
        pkg_info = tf.extractfile(top + "/PKG-INFO").read().decode()
    for path in ROOT.joinpath("docs").iterdir():
        assert "docs/" + path.name in names, (path.name, sorted(names))
    assert "LICENSE" in names, sorted(names)
    for name in ("README.md", "src/fastexec.h", "tools/build_wheels.sh",
                 "python/fastexec/pytest-site/sitecustomize.py"):
        assert name in names, name
    # One version: pyproject takes it from fastexec.__version__.
    meta = email.parser.Parser().parsestr(pkg_info)
    assert meta["Version"] == fastexec.__version__
    pyproject = ROOT.joinpath("pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = {attr = "fastexec.__version__"}' in pyproject
    assert not re.search(r'(?m)^version\s*=\s*"', pyproject)
    assert "fastexec-bridge" == meta["Name"]

"""Every ```python block of README.md runs as written, each in a fresh
interpreter: blocks with a top-level ``await`` run as in ``python -m asyncio``
(inside ``asyncio.run``).  A block whose first line is ``# Python 3.N+``
runs on 3.N and newer; every other block runs everywhere.  (What is not a
program, a list of alternatives say, is not written as a ```python block.)"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

HARNESS = r'''
import ast, asyncio, inspect, sys

def main():
    path, lineno = sys.argv[1], int(sys.argv[2])
    with open(path, encoding="utf-8") as f:
        src = f.read()
    # Padded so that a traceback names the README's own line.
    code = compile("\n" * (lineno - 1) + src, "README.md", "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, ns))
    else:
        exec(code, ns)

if __name__ == "__main__":
    main()
'''


def blocks():
    text = README.read_text(encoding="utf-8")
    found = []
    for m in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S):
        lineno = text.count("\n", 0, m.start(1)) + 1
        found.append(pytest.param(lineno, m.group(1), id="README.md:%d" % lineno))
    return found


def test_readme_has_python_blocks():
    assert len(blocks()) >= 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lineno, code", blocks())
def test_readme_block_runs(lineno, code, tmp_path):
    m = re.match(r"# Python 3\.(\d+)\+", code)
    if m and sys.version_info < (3, int(m.group(1))):
        pytest.skip("the block is for Python 3.%s+" % m.group(1))
    (tmp_path / "harness.py").write_text(HARNESS)
    (tmp_path / "block.py").write_text(code)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "harness.py"), str(tmp_path / "block.py"), str(lineno)],
        cwd=tmp_path, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, "README.md:%d failed:\n%s\n%s" % (
        lineno, code, proc.stderr[-4000:])

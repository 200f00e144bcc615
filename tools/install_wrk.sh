#!/usr/bin/env bash
# Best effort: install wrk (Debian/Ubuntu package) for the benchmark's HTTP
# app workload.  Optional: without it `python -m fastexec bench` uses its
# bundled load client and tests/test_bench.py a stand-in.  Needs root or
# passwordless sudo; otherwise says so and exits 0.
set -u
if command -v wrk >/dev/null 2>&1; then
    echo "wrk: $(command -v wrk)"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    APT=(sudo -n env DEBIAN_FRONTEND=noninteractive apt-get)
else
    echo "wrk: not installed (no root, no passwordless sudo); the bundled client will be used"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "wrk: not installed (no apt-get here); the bundled client will be used"
    exit 0
fi
if timeout 600 "${APT[@]}" install -y -qq wrk >/dev/null 2>&1 ||
   { timeout 600 "${APT[@]}" update -qq >/dev/null 2>&1 &&
     timeout 600 "${APT[@]}" install -y -qq wrk >/dev/null 2>&1; }; then
    echo "wrk: installed, $(command -v wrk)"
else
    echo "wrk: apt-get could not install it; the bundled client will be used"
fi
exit 0

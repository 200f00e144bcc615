# Development tasks (in the style of MagicStack immutables' Makefile).
#
#   make build       build the extension in place (editable install, with the
#                    test dependencies); make debug / make asan rebuild it
#   make debug       build with assertions on, no optimisation (FASTEXEC_DEBUG=1)
#   make asan        build with AddressSanitizer + UBSan (FASTEXEC_SANITIZE=1),
#                    run the test suite under it, then rebuild normally
#   make test        the whole test suite
#   make quicktest   the pool and bridge tests only (no process, stress, leak,
#                    benchmark or source checks)
#   make bench       python -m fastexec bench $(BENCH_ARGS)
#   make lint        ruff, mypy.stubtest and mypy --strict (tests/test_sourcecode.py)
#
# Use a virtual environment's interpreter: make test PYTHON=.venv/bin/python

PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
PYTEST_ARGS ?=
BENCH_ARGS ?=
PIP_INSTALL = $(PYTHON) -m pip install -q -e '.[test]'

.PHONY: all build debug asan test quicktest bench lint clean

all: build

build:
	$(PIP_INSTALL)

debug:
	FASTEXEC_DEBUG=1 $(PIP_INSTALL)

# The sanitizer runtime must be loaded first (LD_PRELOAD); leak detection is
# off (CPython's allocations at exit are not ours); FASTEXEC_SANITIZED tells
# the leak tests that RSS measures ASan's quarantine.
asan:
	FASTEXEC_SANITIZE=1 $(PIP_INSTALL)
	LD_PRELOAD="$$(cc -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	FASTEXEC_SANITIZED=1 \
	$(PYTEST) $(PYTEST_ARGS); status=$$?; \
	$(PIP_INSTALL); exit $$status

test:
	$(PYTEST) $(PYTEST_ARGS)

quicktest:
	$(PYTEST) -x tests/test_pool.py tests/test_pool_faults.py tests/test_bridge.py \
		tests/test_bridge_clients.py $(PYTEST_ARGS)

bench:
	$(PYTHON) -m fastexec bench $(BENCH_ARGS)

lint:
	$(PYTEST) tests/test_sourcecode.py $(PYTEST_ARGS)

clean:
	rm -rf build dist python/*.egg-info .pytest_cache
	rm -f python/fastexec/_fastexec.*.so
	find python tests -name __pycache__ -type d -prune -exec rm -rf {} +

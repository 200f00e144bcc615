"""``python -m fastexec COMMAND``.

Commands:
  bench    benchmark fastexec against the stdlib (``bench --help``)
  status   what fastexec.status() says once install() is in effect
"""

import sys

USAGE = """usage: python -m fastexec COMMAND [options]

commands:
  bench    benchmark fastexec against the stdlib: a real HTTP app and
           micro-benchmarks
           (python -m fastexec bench --help)
  status   which asyncio paths take the fast path once fastexec.install()
           is in effect here, and why not where not
           (--pool: install(pool=True); --no-install: as this Python is)"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from ._bench.cli import main as bench
        return bench(rest, prog="python -m fastexec bench")
    if command == "status":
        return _status(rest)
    print(USAGE, file=sys.stderr)
    print("\nunknown command: %r" % command, file=sys.stderr)
    return 2


def _status(args):
    import argparse

    import fastexec
    parser = argparse.ArgumentParser(
        prog="python -m fastexec status",
        description="Print fastexec.status() once fastexec.install() is in "
                    "effect: which asyncio paths take the fast path here.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--pool", action="store_true",
                       help="install(pool=True): concurrent.futures.ThreadPoolExecutor "
                            "becomes fastexec's too")
    group.add_argument("--no-install", action="store_true",
                       help="don't call install(): this Python as it starts")
    opts = parser.parse_args(args)
    if not opts.no_install:
        fastexec.install(pool=opts.pool)
    print(fastexec.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())

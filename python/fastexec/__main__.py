"""``python -m fastexec COMMAND``.

Commands:
  bench    benchmark fastexec against the stdlib (``bench --help``)
"""

import sys

USAGE = """usage: python -m fastexec COMMAND [options]

commands:
  bench    benchmark fastexec against the stdlib: a real HTTP app and
           micro-benchmarks
           (python -m fastexec bench --help)"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from ._bench.cli import main as bench
        return bench(rest, prog="python -m fastexec bench")
    print(USAGE, file=sys.stderr)
    print("\nunknown command: %r" % command, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

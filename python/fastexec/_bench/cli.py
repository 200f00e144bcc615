"""``python -m fastexec bench``: the command line."""

import argparse
import os
import sys
import tempfile
import time

from . import app, app_workload, micro, report
from .env import Env, Load, default_max_workers, load_average, machine_info
from .runner import Progress, run_workload, steps

WORKLOAD_KEYS = app_workload.WORKLOAD_KEYS + micro.WORKLOAD_KEYS
# What runs without --only: all but the opt-in ones (the Starlette app).
DEFAULT_KEYS = [k for k in WORKLOAD_KEYS if k not in app_workload.OPT_IN_KEYS]


def build_parser(prog=None):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark fastexec against the stdlib: a real HTTP app "
                    "(its server started and stopped by the command, loaded "
                    "by wrk when installed, else by a bundled client) and "
                    "micro-benchmarks; contenders interleaved, figures as "
                    "medians with their range.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, smaller N, shorter app rounds "
                             "(1-2 minutes on 2 cores; a full run takes 6 "
                             "to 8 minutes)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="counted rounds per contender (default 5, "
                             "quick 3)")
    parser.add_argument("--only", metavar="WORKLOAD[,..]",
                        help="run only these workloads: %s, or 'micro' for "
                             "all micro ones (default: all but %s: those "
                             "run only when named)" % (
                                 ", ".join(WORKLOAD_KEYS),
                                 ", ".join(app_workload.OPT_IN_KEYS)))
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="run N CPU-bound processes beside the benchmark "
                             "for its whole duration (the 'loaded' case)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="measured seconds per app round (default 5, "
                             "quick 1; wrk rounds to whole seconds)")
    parser.add_argument("--warmup", type=float, metavar="SECONDS",
                        help="unmeasured load before each app round "
                             "(default 1, quick 0.5)")
    parser.add_argument("--connections", type=int, default=32, metavar="N",
                        help="keep-alive connections of the 'app' workload "
                             "(default 32; 'app-1' always uses 1)")
    parser.add_argument("--client", choices=("auto", "wrk", "bundled"),
                        default="auto",
                        help="the HTTP load client: wrk (Debian/Ubuntu: apt-get "
                             "install wrk), the bundled asyncio client, or "
                             "auto: wrk when installed (default)")
    parser.add_argument("--time-limit", "--limit", type=float,
                        metavar="SECONDS", dest="time_limit",
                        help="no new round after this many seconds: every "
                             "workload keeps the rounds it has (at least one)")
    parser.add_argument("--targets", metavar="FILE",
                        help="also report the goals in FILE (JSON; the "
                             "project's are in tools/bench_targets.json)")
    parser.add_argument("--json", metavar="FILE",
                        help="write every figure (all rounds, medians, the "
                             "machine) as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a chart, one panel per workload "
                             "(matplotlib)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr")
    return parser


def _select(parser, only):
    if not only:
        return list(DEFAULT_KEYS)
    selected = []
    unknown = []
    for key in (k.strip() for k in only.split(",")):
        if not key:
            continue
        if key == "micro":
            selected += micro.WORKLOAD_KEYS
        elif key in WORKLOAD_KEYS:
            selected.append(key)
        else:
            unknown.append(key)
    if unknown or not selected:
        parser.error("%s; choose from %s, micro" % (
            "unknown workload(s) " + ", ".join(unknown) if unknown
            else "no workload given", ", ".join(WORKLOAD_KEYS)))
    return [k for k in WORKLOAD_KEYS if k in selected]


def _why_not_run(env, workload, runnable):
    """Which contenders of *workload* do not run, and why (the missing
    modules)."""
    missing = {}
    for name in workload.contenders:
        if name not in runnable:
            for module in workload.requires.get(name, ()):
                if module in env.missing:
                    missing.setdefault(module, []).append(name)
    return {
        "contenders": [c for c in workload.contenders if c not in runnable],
        "reasons": {m: env.missing[m] for m in missing},
        "all": not runnable,
        "text": "%s: %s" % (
            "NOT RUN" if not runnable else "not run for %s" % ", ".join(
                c for c in workload.contenders if c not in runnable),
            "; ".join(env.missing[m] for m in missing)),
    }


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick
                                                          else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.load < 0:
        parser.error("--load must be 0 or more")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    duration = args.duration if args.duration is not None else (
        1.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (
        0.5 if args.quick else 1.0)
    if duration <= 0 or warmup < 0:
        parser.error("--duration must be above 0 and --warmup 0 or more")
    targets = None
    if args.targets:
        try:
            targets = report.load_targets(args.targets)
        except (OSError, ValueError, KeyError) as exc:
            parser.error("--targets: %s" % exc)
    selected = _select(parser, args.only)
    wrk = None
    if any(k in app_workload.WORKLOAD_KEYS for k in selected):
        wrk = app.find_wrk() if args.client != "bundled" else None
        if args.client == "wrk" and wrk is None:
            parser.error("--client wrk: wrk is not on PATH (Debian/Ubuntu: "
                         "apt-get install wrk)")

    def out(text=""):
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # The reader went away (| head): keep going for --json / --plot.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    started = time.monotonic()
    deadline = started + args.time_limit if args.time_limit else None
    env = Env()
    info = machine_info()
    app_settings = app_workload.AppSettings(duration, warmup, wrk)
    uses_app = any(k in app_workload.WORKLOAD_KEYS for k in selected)
    settings = {
        "mode": "quick" if args.quick else "full", "rounds": rounds,
        "load": args.load,
        "micro": any(k in micro.WORKLOAD_KEYS for k in selected),
        "client": app_settings.client_name() if uses_app else None,
    }

    fd, stat_path = tempfile.mkstemp(prefix="fastexec-bench-")
    results, seconds, cut = [], {}, []
    try:
        os.write(fd, b"x" * 4096)
        os.close(fd)
        os.stat(stat_path)            # now it is in the cache
        workloads = (app_workload.make_workloads(app_settings,
                                                 args.connections)
                     + micro.make_workloads(stat_path,
                                            os.urandom(micro.SHA_BUFFER)))
        workloads = [w for w in workloads if w.key in selected]
        settings["wanted"] = {m for w in workloads
                              for c in w.contenders
                              for m in w.requires.get(c, ())}
        report.print_header(out, env, info, settings)
        plan = [(w, w.runnable(env)) for w in workloads]
        not_run = {w.key: _why_not_run(env, w, runnable)
                   for w, runnable in plan if len(runnable) < len(w.contenders)}
        sizes = {w.key: (w.quick_size if args.quick else w.full_size)
                 for w in workloads}
        progress = Progress(sum(steps(w, cs, rounds) for w, cs in plan),
                            enabled=not args.no_progress)
        with Load(args.load) as load:
            one_sleep_ms = (micro.measure_one_sleep_ms() if "sleep" in sizes
                            else None)
            try:
                for workload, contenders in plan:
                    t0 = time.monotonic()
                    done, was_cut = run_workload(
                        env, workload, contenders, sizes[workload.key],
                        rounds, progress, deadline)
                    results += done
                    if was_cut:
                        cut.append(workload.title)
                    seconds[workload.key] = time.monotonic() - t0
            finally:
                progress.finish()
            load_alive = load.alive()
            load_pids = load.pids
    finally:
        os.unlink(stat_path)
        app_settings.cleanup()

    report.print_table(out, results)
    for workload in workloads:
        if not_run.get(workload.key, {}).get("all"):
            out("%s: %s" % (workload.title, not_run[workload.key]["text"]))
    if args.load and load_alive != args.load:
        out("warning: only %d of the %d load processes were still running at "
            "the end" % (load_alive, args.load))
    if cut:
        out("warning: --time-limit %g s reached: fewer rounds than asked for "
            "in %s" % (args.time_limit, ", ".join(cut)))
    report.print_workloads(out, workloads, sizes, seconds, one_sleep_ms,
                           not_run)
    evaluated = []
    if targets is not None:
        evaluated = report.evaluate_targets(targets, results, args.load)
        report.print_targets(out, evaluated, args.targets)

    if args.json:
        contenders = {name: c.description
                      for name, c in micro.CONTENDERS.items()}
        contenders.update({name: v[2] for name, v in
                           app_workload.CONTENDERS.items()})
        contenders.update({"starlette: " + name: v[2] for name, v in
                           app_workload.STARLETTE_CONTENDERS.items()})
        meta = dict(info, mode=settings["mode"], rounds=rounds,
                    load=args.load, load_processes_alive_at_end=load_alive,
                    load_pids=load_pids,
                    load_average_at_end=load_average(),
                    http_client=settings["client"],
                    app_duration=app_settings.duration,
                    app_warmup=app_settings.warmup,
                    sizes=sizes, one_sleep_ms=one_sleep_ms,
                    workload_seconds=seconds, time_limit=args.time_limit,
                    cut_by_time_limit=cut,
                    default_max_workers=default_max_workers(),
                    versions=env.versions(), skipped=env.missing,
                    notes=env.notes, targets_file=args.targets,
                    not_run=not_run)
        report.write_json(args.json, meta, contenders, results, evaluated)
        out("")
        out("wrote %s" % args.json)
    if args.plot:
        title = "fastexec bench, %s mode: Python %s, %s CPUs (%s), %s" % (
            settings["mode"], info["python"], info["cpu_count"],
            info["cpu_model"] or info["machine"],
            "loaded: %d CPU-bound process%s beside it" % (
                args.load, "" if args.load == 1 else "es")
            if args.load else "idle (no load added)")
        if report.write_plot(args.plot, results, title):
            out("wrote %s" % args.plot)
        else:
            out("matplotlib is not installed: pip install matplotlib "
                "(no plot written)")
    errors = [r for r in results if r.error]
    out("")
    out("total time: %.1f s" % (time.monotonic() - started))
    if errors:
        out("errors: %s" % "; ".join("%s / %s: %s" % (
            r.workload.title, r.contender, r.error) for r in errors))
        return 1
    return 0

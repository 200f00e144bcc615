"""What the benchmark prints and writes: the table, JSON, a chart, goals."""

import json
import sys

# --------------------------------------------------------------------------
# Figures and ratios.


def _can_print(text):
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


_PRETTY = {"us/call": "\u00b5s/call"} if _can_print("\u00b5") else {}
X = "\u00d7" if _can_print("\u00d7") else "x"     # as in "12x faster"
DASH = "\u2013" if _can_print("\u2013") else "-"

# Above this spread (max - min over the median), a row's figure is flagged.
NOISY = 0.10


def unit_text(unit):
    return _PRETTY.get(unit, unit)


def number(value, unit):
    if value is None:
        return "-"
    if unit in ("calls/s", "B/call", "req/s"):
        return "{:,.0f}".format(value)
    if value >= 100:
        return "%.1f" % value
    return "%.2f" % value


def figure(value, unit):
    return "-" if value is None else "%s %s" % (number(value, unit),
                                                unit_text(unit))


def find(results, workload_key, contender):
    for r in results:
        if (r.workload.key == workload_key and r.contender == contender
                and r.median is not None):
            return r
    return None


def baseline(results, result):
    return find(results, result.workload.key, result.workload.baseline)


def better(workload, value, base):
    """How many times better than *base*: > 1 is better, whichever the unit."""
    if not value or not base:
        return None
    return value / base if workload.better == "higher" else base / value


def better_ratio(result, base):
    if result.median is None or base is None:
        return None
    return better(result.workload, result.median, base.median)


def round_ratios(result, base):
    """Round i against the baseline's round i (they ran side by side)."""
    if base is None or base is result:
        return []
    pairs = zip(result.rounds, base.rounds)
    return [x for x in (better(result.workload, a, b) for a, b in pairs)
            if x is not None]


def raw_ratio(result, base):
    if result.median is None or base is None or not base.median:
        return None
    return result.median / base.median


def ratio_words(ratio, workload):
    """'2.31x faster', '3.10x slower', 'same' (ratio > 1 is better)."""
    good, bad = (("smaller", "larger") if workload.unit == "B/call"
                 else ("faster", "slower"))
    if ratio is None:
        return "-"
    if 0.995 <= ratio <= 1.005:
        return "same"
    if ratio >= 1:
        return "%.2f%s %s" % (ratio, X, good)
    return "%.2f%s %s" % (1 / ratio, X, bad)


def versus(results, result):
    """The 'vs stdlib' cell and whether the rounds can't tell it apart."""
    base = baseline(results, result)
    if base is result:
        return "baseline", False
    ratio = better_ratio(result, base)
    if ratio is None:
        return "-", False
    text = ratio_words(ratio, result.workload)
    per_round = round_ratios(result, base)
    unclear = False
    if len(per_round) > 1:
        lo, hi = min(per_round), max(per_round)
        text += " (rounds %.2f%s%.2f)" % (lo, DASH, hi)
        unclear = lo < 1 < hi
    return text, unclear


def note(results, result):
    w = result.workload
    if result.median is None:
        return ""
    if w.ideal is not None:
        ideal = w.ideal(result.size)
        return "%.2f%s ideal (%s)" % (result.median / ideal, X,
                                       figure(ideal, w.unit))
    if result.is_reference:
        return "reference, not a contender: %s" % {
            "limit (no thread)": "upper bound, no thread",
            "inline (no thread)": "upper bound, no thread",
            "serial (no pool)": "the same jobs one after the other",
            "bare threads": "plain threads, no pool, no loop",
        }.get(result.contender, "a bound")
    for ref_name in w.references:
        ref = find(results, w.key, ref_name)
        if ref is None:
            continue
        if ref_name == "serial (no pool)":
            return "%.2f%s speed-up vs serial" % (ref.median / result.median, X)
        if ref_name in ("limit (no thread)", "inline (no thread)"):
            share = result.median / ref.median
            text = "%.0f%% of %s" % (100 * share, ref_name.split(" ")[0])
            if share > 1:
                text += (" (above the bound: the bound is measured too, "
                         "compare the ranges)")
            return text
    return ""


# --------------------------------------------------------------------------
# The text output.

def print_header(out, env, info, settings):
    """What a first-time reader needs before the figures."""
    s = settings
    out("fastexec bench: %s mode, %d round%s per contender, interleaved "
        "(A B C A B C ...)%s" % (
            s["mode"], s["rounds"], "" if s["rounds"] == 1 else "s",
            "" if not s["micro"] else "; micro workloads: 1 warm-up round "
            "first, not counted"))
    out("Python %s (%s, %s) on %s" % (info["python"], info["implementation"],
                                      info["python_build"], info["platform"]))
    loadavg = info.get("load_average_at_start")
    out("machine: %s CPUs (%s usable by this process), %s, %s; load average "
        "at start %s" % (
            info["cpu_count"], info["process_cpu_count"], info["machine"],
            info["cpu_model"] or "unknown CPU",
            "unknown" if loadavg is None else "%.2f" % loadavg[0]))
    cpus = info["process_cpu_count"] or 1
    if loadavg is not None and loadavg[0] >= 0.75 * cpus:
        out("warning: the machine is busy before we start (load average "
            "%.2f on %d CPUs): the figures will be noisier and lower than on "
            "an idle machine" % (loadavg[0], cpus))
    if s["load"]:
        out("LOADED: %d CPU-bound process%s spinning beside the benchmark "
            "for its whole run (--load %d)" % (
                s["load"], "" if s["load"] == 1 else "es", s["load"]))
    else:
        out("idle: no load added (--load 0); other programs on the machine "
            "are not controlled, see the load average")
    versions = ["%s %s" % item for item in env.versions().items()]
    out("with: %s" % (", ".join(versions) or "stdlib only"))
    if s.get("client"):
        out("HTTP load from: %s" % s["client"])
    for name, why in sorted(env.missing.items()):
        if name not in s.get("wanted", env.missing):
            continue
        out("skipped: contenders needing %s (%s)" % (name, why))
    for text in env.notes:
        out("note: %s" % text)
    out("how to read: each workload names its unit and whether higher or "
        "lower is better;")
    out("  median of the rounds, [min %s max] their range; 'vs %s' says how "
        "many times faster or" % (DASH, "stdlib"))
    out("  slower than the stdlib contender, with the range of the ratios "
        "round by round.")
    out("")


def print_table(out, results):
    header = ["contender", "median", "[min %s max]" % DASH, "vs stdlib", "note"]
    rows = []
    unclear_rows = []
    noisy_rows = []
    previous = None
    for r in results:
        w = r.workload
        if w is not previous:
            if previous is not None:
                rows.append(None)
            rows.append("%s  (%s, %s is better)" % (w.title, unit_text(w.unit),
                                                    w.better))
            previous = w
        if r.median is None:
            rows.append(["  " + r.contender, "ERROR", "", "",
                         r.error or "no figure"])
            continue
        text, unclear = versus(results, r)
        if unclear and not r.is_reference:
            text += " ~"
            unclear_rows.append("%s / %s" % (w.title, r.contender))
        if r.spread is not None and r.spread > NOISY:
            noisy_rows.append("%s / %s (%.0f%%)" % (w.title, r.contender,
                                                    100 * r.spread))
        span = ("" if len(r.rounds) < 2 else "[%s %s %s]" % (
            number(r.low, w.unit), DASH, number(r.high, w.unit)))
        extra = note(results, r)
        if r.error:
            extra += "  (error: %s)" % r.error
        rows.append(["  " + r.contender, figure(r.median, w.unit), span, text,
                     extra])
    cells = [row for row in rows if isinstance(row, list)]
    widths = [len(h) for h in header]
    for row in cells:
        widths = [max(wd, len(c)) for wd, c in zip(widths, row)]
    right = {1, 2}

    def line(row):
        return "  ".join(c.rjust(wd) if i in right else c.ljust(wd)
                         for i, (c, wd) in enumerate(zip(row, widths))).rstrip()

    out(line(header))
    out(line(["-" * wd for wd in widths]))
    for row in rows:
        if row is None:
            out("")
        elif isinstance(row, str):
            out(row)
        else:
            out(line(row))
    out("")
    single = any(len(r.rounds) == 1 for r in results)
    if single:
        out("warning: one round per contender: no spread, and one quick run "
            "may not agree with the next; use --rounds 5 or more.")
    if unclear_rows:
        out("warning: '~': the rounds disagree on whether it is faster or "
            "slower than the stdlib (%s); run more rounds or longer."
            % "; ".join(unclear_rows))
    if noisy_rows:
        out("warning: spread above %d%% of the median: %s. Two runs may not "
            "agree within it: more --rounds, a longer --duration, or a "
            "quieter machine." % (100 * NOISY, "; ".join(noisy_rows)))


def print_workloads(out, workloads, sizes, seconds, one_sleep_ms=None,
                    not_run=None):
    """The workloads, one line each; *not_run*: {key: {"text": ...}} for
    those whose contenders (some or all) could not run."""
    from .env import default_max_workers
    out("")
    out("workloads:")
    for w in workloads:
        skipped = (not_run or {}).get(w.key)
        out("  %s: %s = %s, %s workers, %.1f s in all. %s%s" % (
            w.title, w.size_text, "{:,}".format(sizes[w.key]),
            w.max_workers or default_max_workers(),
            seconds.get(w.key, 0.0), w.description,
            "" if skipped is None else ". " + skipped["text"]))
    if one_sleep_ms is not None:
        out("  (one time.sleep(0.001) takes %.3f ms here: the floor of the "
            "sleep workload before any pool)" % one_sleep_ms)


# --------------------------------------------------------------------------
# Goals (the project's targets: a data file, not part of the measuring code).

def load_targets(path):
    with open(path) as f:
        data = json.load(f)
    targets = data["targets"] if isinstance(data, dict) else data
    for t in targets:
        for key in ("text", "workload", "ours", "theirs", "op", "threshold"):
            if key not in t:
                raise ValueError("%s: a target lacks %r: %r" % (path, key, t))
        if t["op"] not in (">=", "<="):
            raise ValueError("%s: op must be >= or <=: %r" % (path, t))
    return targets


def evaluate_target(target, results, load):
    """(status, value, detail); the value is ours/theirs of the medians."""
    want = target.get("load", 0)
    if want != load:
        return "not measured", None, "needs --load %d (this run: %d)" % (
            want, load)
    ours = find(results, target["workload"], target["ours"])
    if ours is None:
        return "not measured", None, "%s / %s did not run" % (
            target["workload"], target["ours"])
    if target["theirs"] == "ideal":
        if ours.workload.ideal is None:
            return "not measured", None, "no ideal for %s" % target["workload"]
        theirs_value = ours.workload.ideal(ours.size)
    else:
        theirs = find(results, target["workload"], target["theirs"])
        if theirs is None:
            return "not measured", None, "%s / %s did not run" % (
                target["workload"], target["theirs"])
        theirs_value = theirs.median
    value = ours.median / theirs_value
    if target.get("invert"):
        value = 1 / value
    met = (value >= target["threshold"] if target["op"] == ">="
           else value <= target["threshold"])
    return ("met" if met else "not met"), value, "%.3f%s" % (value, X)


def evaluate_targets(targets, results, load):
    return [(t,) + evaluate_target(t, results, load) for t in targets]


def print_targets(out, evaluated, path):
    out("")
    out("the project's goals, from %s (informational: the exit status does "
        "not depend on them):" % path)
    width = max([len(t["text"]) for t, _, _, _ in evaluated] or [0])
    for target, status, _value, detail in evaluated:
        out("  %-12s  %s  %s" % (status, target["text"].ljust(width),
                                 detail if status == "not measured"
                                 else "measured " + detail))
    statuses = [s for _, s, _, _ in evaluated]
    out("  %d met, %d not met, %d not measured in this run" % (
        statuses.count("met"), statuses.count("not met"),
        statuses.count("not measured")))


# --------------------------------------------------------------------------
# JSON and the chart.

def result_record(results, r):
    base = baseline(results, r)
    per_round = round_ratios(r, base)
    return {
        "workload": r.workload.key,
        "title": r.workload.title,
        "description": r.workload.description,
        "contender": r.contender,
        "reference": r.is_reference,
        "unit": r.workload.unit,
        "better": r.workload.better,
        "size": r.size,
        "max_workers": r.max_workers,
        "warmup": r.warmup,
        "rounds": r.rounds,
        "median": r.median,
        "min": r.low,
        "max": r.high,
        "stdev": r.stdev,
        "spread": r.spread,
        "baseline": base.contender if base is not None else None,
        "vs_baseline": better_ratio(r, base),
        "vs_baseline_words": ratio_words(better_ratio(r, base), r.workload),
        "vs_baseline_rounds": per_round,
        "raw_ratio": raw_ratio(r, base),
        "note": note(results, r),
        "extras": r.extras if any(e is not None for e in r.extras) else None,
        "error": r.error,
    }


def write_json(path, meta, contenders, results, evaluated):
    data = {
        "meta": meta,
        "contenders": contenders,
        "results": [result_record(results, r) for r in results],
        "targets": [{
            "target": t["text"], "workload": t["workload"], "ours": t["ours"],
            "theirs": t["theirs"], "op": t["op"],
            "threshold": t["threshold"], "load": t.get("load", 0),
            "status": status, "measured": value, "detail": detail,
        } for t, status, value, detail in evaluated],
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


# Colours by role, from Okabe & Ito's palette (they differ in lightness too,
# and references are hatched): readable without colour vision.
ROLES = [("stdlib (the baseline)", "#999999", None),
         ("fastexec", "#0072B2", None),
         ("other paths (stdlib variants, uvloop, anyio)", "#E69F00", None),
         ("reference: a bound, not a contender", "#FFFFFF", "///")]


def _role(result):
    w = result.workload
    if result.is_reference:
        return 3
    if result.contender == w.baseline:
        return 0
    if "fastexec" in w.requires.get(result.contender, ()):
        return 1
    return 2


def write_plot(path, results, title):
    """One panel per workload: each contender's median, its min-max range as
    an error bar, and its ratio to the stdlib.  False if matplotlib is
    missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from matplotlib.ticker import FuncFormatter
    groups = []
    for r in results:
        if r.median is None:
            continue
        if not groups or groups[-1][0] is not r.workload:
            groups.append((r.workload, []))
        groups[-1][1].append(r)
    if not groups:
        return False
    heights = [0.6 + 0.32 * len(rs) for _, rs in groups]
    height = 1.8 + sum(heights)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, height),
                             gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    for ax, (w, rs) in zip(axes[:, 0], groups):
        y = list(range(len(rs)))[::-1]
        medians = [r.median for r in rs]
        lo = [r.median - r.low for r in rs]
        hi = [r.high - r.median for r in rs]
        bars = ax.barh(y, medians, xerr=[lo, hi], capsize=3,
                       color=[ROLES[_role(r)][1] for r in rs],
                       edgecolor="black", linewidth=0.5,
                       error_kw={"elinewidth": 0.8})
        for bar, r in zip(bars, rs):
            if ROLES[_role(r)][2]:
                bar.set_hatch(ROLES[_role(r)][2])
        for bar_y, r in zip(y, rs):
            text, _ = versus(results, r)
            text = text.split(" (rounds")[0]
            ax.text(r.high, bar_y, "  %s  %s" % (figure(r.median, w.unit),
                                                 text),
                    va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels([r.contender + (" (reference)" if r.is_reference
                                           else "") for r in rs], fontsize=8)
        ax.set_xlim(0, max(r.high for r in rs) * 1.6)
        ax.set_title("%s: %s, %s is better" % (w.title, unit_text(w.unit),
                                               w.better),
                     fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda v, _: "{:,.0f}".format(v) if v >= 100 else "%g" % v))
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(facecolor=c, edgecolor="black", hatch=h,
                              label=name) for name, c, h in ROLES],
               loc="upper center", bbox_to_anchor=(0.5, 1.0 - 0.5 / height),
               ncol=2, fontsize=7, frameon=False)
    fig.suptitle(title + "\nbars: median; whiskers: min to max of the rounds",
                 fontsize=9, y=1.0 - 0.05 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1.0 - 0.95 / height))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True

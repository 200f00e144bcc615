"""Workloads, results and the interleaved rounds."""

import gc
import statistics
import sys
import time

from .env import default_max_workers


class Workload:
    """A measured task.

    ``open_session(env, contender, max_workers)`` returns a session (with a
    ``close()``) that ``measure(session, size)`` runs one round on; measure
    returns the round's figure, or ``(figure, extras_dict)``.
    """

    def __init__(self, key, title, unit, better, contenders, measure,
                 open_session, full_size, quick_size, max_workers=None,
                 max_rounds=None, description="", baseline="stdlib",
                 references=(), warmup_round=True, size_text="N",
                 requires=None, ideal=None):
        self.key = key
        self.title = title
        self.unit = unit
        self.better = better            # "higher" or "lower"
        self.contenders = contenders
        self.measure = measure
        self.open_session = open_session
        self.full_size = full_size
        self.quick_size = quick_size
        self.max_workers = max_workers  # None: the stdlib default
        self.max_rounds = max_rounds    # None: as many as asked for
        self.description = description
        self.baseline = baseline
        self.references = references    # bounds to read the others against
        self.warmup_round = warmup_round
        self.size_text = size_text
        self.requires = requires or {}  # contender -> optional modules
        self.ideal = ideal              # ideal(size) -> the best figure

    def runnable(self, env):
        """The contenders whose modules are here."""
        return [c for c in self.contenders
                if env.has(self.requires.get(c, ()))]

    def rounds_for(self, rounds):
        return min(rounds, self.max_rounds or rounds)


class Result:
    """One contender's figures for one workload."""

    def __init__(self, workload, contender, size, max_workers):
        self.workload = workload
        self.contender = contender
        self.size = size
        self.max_workers = max_workers
        self.warmup = None
        self.rounds = []
        self.extras = []
        self.error = None

    @property
    def median(self):
        return statistics.median(self.rounds) if self.rounds else None

    @property
    def low(self):
        return min(self.rounds) if self.rounds else None

    @property
    def high(self):
        return max(self.rounds) if self.rounds else None

    @property
    def spread(self):
        """(max - min) / median of the counted rounds."""
        if len(self.rounds) < 2 or not self.median:
            return None
        return (self.high - self.low) / self.median

    @property
    def stdev(self):
        return statistics.stdev(self.rounds) if len(self.rounds) > 1 else None

    @property
    def is_reference(self):
        return self.contender in self.workload.references


class Progress:
    """A single progress line on stderr (a line per step when not a tty)."""

    def __init__(self, total, enabled=True):
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()

    def step(self, text):
        self.done += 1
        if not self.enabled:
            return
        line = "[%d/%d] %s" % (self.done, self.total, text)
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish(self):
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def steps(workload, contenders, rounds):
    return len(contenders) * (workload.rounds_for(rounds)
                              + (1 if workload.warmup_round else 0))


def run_workload(env, workload, contenders, size, rounds, progress,
                 deadline=None):
    """Every contender, round after round, interleaved (A B C A B C ...).

    A round is started only before *deadline* (time.monotonic()); the rounds
    done are kept, the same number for every contender.  Returns the results
    and whether the deadline cut the rounds short.
    """
    rounds = workload.rounds_for(rounds)
    max_workers = workload.max_workers or default_max_workers()
    results = [Result(workload, name, size, max_workers) for name in contenders]
    sessions = []
    cut = False
    try:
        for result in results:
            try:
                sessions.append(workload.open_session(env, result.contender,
                                                      max_workers))
            except Exception as exc:
                result.error = "could not start: %r" % (exc,)
                sessions.append(None)
        first = 0 if workload.warmup_round else 1
        for round_no in range(first, rounds + 1):
            if (deadline is not None and round_no > 1
                    and time.monotonic() >= deadline):
                cut = True
                break
            label = "warm-up" if round_no == 0 else "round %d" % round_no
            for result, session in zip(results, sessions):
                progress.step("%s / %s %s" % (workload.title, result.contender,
                                              label))
                if result.error is not None:
                    continue
                gc.collect()
                try:
                    figure = workload.measure(session, size)
                except Exception as exc:
                    result.error = "%s: %s" % (label, exc)
                    continue
                extras = None
                if isinstance(figure, tuple):
                    figure, extras = figure
                if round_no == 0:
                    result.warmup = figure
                else:
                    result.rounds.append(figure)
                    result.extras.append(extras)
    finally:
        for result, session in zip(results, sessions):
            if session is not None:
                try:
                    session.close()
                except Exception as exc:
                    if result.error is None:
                        result.error = "on close: %r" % (exc,)
    return results, cut

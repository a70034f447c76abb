"""One progress style for long commands: a bar on a terminal, log lines elsewhere.

`track(what, total)` is the context manager the commands use. On a terminal (standard error)
it draws a rich bar with the steps done, the time elapsed and an ETA from the measured rate of
finished steps; under `--quiet` it shows nothing; when standard error is not a terminal (a log
file, a pipe, a batch job) it writes lines through `logging` (logger ``scalelaw``, INFO): one
when the work starts, then at most every `EVERY` seconds and one at the end, each with
"i of n" and the ETA. `install_log_handler` (called by the CLI) sends them to standard error.

The tracker is also the `progress=` callback of the fitting API: called with a message, a step
begins (and the one before it is finished); its `expect(n)` is told how many steps are to come
(`scalelaw.fits.progress.announce`). `advance(n, description)` counts steps done directly
(`measure` counts samples).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from scalelaw.commands.consoles import err

logger = logging.getLogger("scalelaw")

#: seconds between two log lines, at most (about: the clock is looked at twice a second)
EVERY = 10.0
#: seconds after which a log line says the work has started, if no step has said so before
FIRST = 1.5
#: seconds the log thread sleeps between looks at the clock
TICK = 0.5


def duration(seconds: float) -> str:
    """A human duration: '8 s', '2 min 05 s', '1 h 03 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Eta:
    """Seconds left, from the rate of finished steps (`clock` is injectable for tests).

    Before a step has finished there is no rate and no ETA (None, never nan), unless the work
    was predicted (`guess`, seconds in all, e.g. from a fit's size): then what is left of the
    prediction, so that one long step (sampling) has an ETA from its start. Between two
    finished steps the ETA counts down, but not below what the unstarted steps will take; a
    prediction keeps it from falling below what is left of that."""

    def __init__(self, total: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.total = total
        self.started = clock()
        self.done = 0
        self.last = self.started  # when the last step finished
        self.guess: float | None = None

    def finish(self, n: int = 1) -> None:
        if n:
            self.done += n
            self.last = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float | None:
        guessed = None if self.guess is None else max(self.guess - self.elapsed(), 0.0)
        if self.total is None or self.done <= 0:
            return guessed
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        per = (self.last - self.started) / self.done
        measured = max(per * left - (self.clock() - self.last), per * (left - 1))
        return measured if guessed is None else max(measured, guessed)

    def eta(self) -> str:
        left = self.remaining()
        if left is None:
            return "no ETA yet"
        # a prediction not yet overtaken by measured rates says so
        rough = self.guess is not None and (self.done <= 0 or left == self.guess - self.elapsed())
        return f"ETA {'about ' if rough else ''}{duration(left)}"


class _EtaColumn(ProgressColumn):
    def __init__(self, eta: Eta) -> None:
        super().__init__()
        self.eta = eta

    def render(self, task: Any) -> Text:
        left = self.eta.remaining()
        return Text("ETA " + ("-" if left is None else duration(left)), style="progress.remaining")


class Tracker:
    """What `track` yields; see the module's text."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        *,
        unit: str = "steps",
        mode: str = "log",
        hold: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.unit, self.mode = what, unit, mode
        # the first log line waits `FIRST` seconds even when a step begins before: work done
        # by then writes none (a quick fit's report is all it prints), longer work is logged
        # from then on with the steps it has done counted
        self.hold = hold
        self.eta = Eta(total, clock)
        self.message = ""
        self.running = False  # a step has begun and not finished
        self.logged: float | None = None  # when the last log line was written
        self.eta_said = False  # a log line has given an ETA
        self.bar: Progress | None = None
        self.task: Any = None
        self.lock = threading.RLock()

    # --- counting ------------------------------------------------------------------------------
    def guess(self, seconds: float) -> None:
        """The whole work is predicted to take about `seconds`: an ETA before a step ends."""
        with self.lock:
            self.eta.guess = float(seconds)
        self._show()

    def expect(self, n: int) -> None:
        """`n` more steps are to come (negative: fewer than announced)."""
        with self.lock:
            self.eta.total = max((self.eta.total or 0) + n, self.eta.done)
        self._show()

    def __call__(self, message: str) -> None:
        """A step begins: the one before it, if any, is finished."""
        with self.lock:
            if self.running:
                self.eta.finish(1)
            self.running, self.message = True, message
        self._show(step=True)

    def advance(self, n: int = 1, description: str | None = None) -> None:
        """`n` steps done (and, given, what is being done now)."""
        with self.lock:
            self.eta.finish(n)
            if description is not None:
                self.message = description
        self._show(step=True)

    def close(self) -> None:
        with self.lock:
            if self.running:
                self.eta.finish(1)
                self.running = False

    # --- showing -------------------------------------------------------------------------------
    def counts(self) -> str:
        total = "?" if self.eta.total is None else str(self.eta.total)
        return f"{self.eta.done} of {total} {self.unit} done"

    def line(self, first: bool = False) -> str:
        """One log line: what, i of n done, elapsed, ETA, and what is being done now."""
        now = f" (now {self.message})" if self.message else ""
        started = "started; " if first else ""
        elapsed = duration(self.eta.elapsed())
        return f"{self.what}: {started}{self.counts()}, {elapsed} elapsed, {self.eta.eta()}{now}"

    def _show(self, step: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task, completed=self.eta.done, total=self.eta.total, description=self.message
            )
        elif self.mode == "log" and step:
            with self.lock:
                due = not self.hold or self.eta.elapsed() >= FIRST
                self.tick(force=self.logged is None and due)

    def tick(self, force: bool = False) -> None:
        """A log line when one is due: the first, one `EVERY` seconds after the last, and one
        as soon as there is an ETA (at least `FIRST` seconds after the last line)."""
        now = self.eta.clock()
        since = None if self.logged is None else now - self.logged
        first_eta = not self.eta_said and self.eta.remaining() is not None
        if force or (since is not None and (since >= EVERY or (first_eta and since >= FIRST))):
            self.eta_said = self.eta_said or self.eta.remaining() is not None
            text = self.line(first=self.logged is None)
            self.logged = now
            logger.info("%s", text)

    def finished(self, failed: bool) -> None:
        if self.mode != "log" or self.logged is None:
            return  # nothing said at the start (a quick run or error): nothing at the end
        how = "stopped after" if failed else "finished:"
        logger.info("%s: %s %s in %s", self.what, how, self.counts(), duration(self.eta.elapsed()))


@contextmanager
def track(
    what: str,
    total: int | None = None,
    *,
    quiet: bool = False,
    unit: str = "steps",
    console: Console | None = None,
    transient: bool = True,
    hold: bool = False,
) -> Iterator[Tracker]:
    """Progress of `total` steps (None: told later through `expect`), shown as the module's
    text says: a bar on a terminal, log lines otherwise, nothing when `quiet`. `hold`: no log
    line before `FIRST` seconds, so work done by then logs nothing."""
    out = console or err
    mode = "off" if quiet else ("bar" if out.is_terminal else "log")
    tracker = Tracker(what, total, unit=unit, mode=mode, hold=hold)
    failed = True
    with _drawn(tracker, out, transient), _logged(tracker):
        try:
            yield tracker
            failed = False
        finally:
            tracker.close()
            tracker.finished(failed)


@contextmanager
def _drawn(tracker: Tracker, console: Console, transient: bool) -> Iterator[None]:
    """The rich bar on a terminal: what, bar, i/n unit, elapsed, ETA, what is being done."""
    if tracker.mode != "bar":
        yield
        return
    columns = (
        SpinnerColumn(),
        TextColumn(f"[bold]{escape(tracker.what)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(tracker.unit),
        TimeElapsedColumn(),
        _EtaColumn(tracker.eta),
        # step messages name the user's laws, models and tasks: `[v2]` is not markup
        TextColumn("{task.description}", markup=False),
    )
    with Progress(*columns, console=console, transient=transient) as bar:
        tracker.bar, tracker.task = bar, bar.add_task("", total=tracker.eta.total)
        try:
            yield
        finally:
            tracker._show()
            tracker.bar = None


@contextmanager
def _logged(tracker: Tracker) -> Iterator[None]:
    """Off a terminal: a thread that writes the first line after `FIRST` seconds (if no step
    has) and one every `EVERY` seconds while a long step runs."""
    if tracker.mode != "log":
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(TICK):
            with tracker.lock:
                tracker.tick(force=tracker.logged is None and tracker.eta.elapsed() >= FIRST)

    thread = threading.Thread(target=watch, name="scalelaw-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def sweep_progress(quiet: bool) -> Callable[[int], Any]:
    """`measure`'s progress for `scalelaw.measure.sweep.run_sweep`: given the samples to run, a
    context yielding `advance(samples, description)`."""

    @contextmanager
    def progress(total: int) -> Iterator[Callable[..., None]]:
        with track("measure", total, quiet=quiet, unit="samples", transient=False) as tracker:
            yield tracker.advance

    return progress


class _StandardError(logging.Handler):
    """Writes to whatever `sys.stderr` is when a line is written (a test may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def install_log_handler() -> None:
    """Send the ``scalelaw`` logger's INFO lines to standard error, once per process."""
    if any(isinstance(h, _StandardError) for h in logger.handlers):
        return
    handler = _StandardError(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

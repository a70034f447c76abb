"""The progress style of long commands (scalelaw/commands/progress.py): the ETA from the rate of
finished steps, and the log lines written when standard error is not a terminal."""

from __future__ import annotations

import logging

import pytest

from scalelaw.commands import progress
from scalelaw.commands.progress import Eta, Tracker, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_eta_before_a_step_finishes_and_never_nan() -> None:
    clock = Clock()
    eta = Eta(10, clock)
    clock.now += 30
    assert eta.remaining() is None
    assert eta.eta() == "no ETA yet"
    assert Eta(None, clock).remaining() is None  # no total: no ETA


def test_the_eta_is_the_measured_rate_times_the_steps_left() -> None:
    clock = Clock()
    eta = Eta(10, clock)
    clock.now += 20
    eta.finish(2)  # 10 s a step
    assert eta.remaining() == pytest.approx(80.0)
    clock.now += 5  # half way through the third step: the ETA counts down
    assert eta.remaining() == pytest.approx(75.0)
    clock.now += 60  # a slow step: the ETA stops at what the unstarted steps will take
    assert eta.remaining() == pytest.approx(70.0)
    eta.finish(8)
    assert eta.remaining() == 0.0
    assert eta.eta() == "ETA 0 s"


def test_a_predicted_duration_gives_an_eta_before_any_step_ends() -> None:
    # one long step (a Bayesian fit's sampling): without a prediction no ETA until it ends
    clock = Clock()
    eta = Eta(3, clock)
    eta.guess = 60.0
    clock.now += 5
    assert eta.remaining() == pytest.approx(55.0)
    assert eta.eta() == "ETA about 55 s"
    clock.now += 100  # slower than predicted: the ETA stops at 0, never negative
    assert eta.remaining() == 0.0
    eta.finish(1)  # then the measured rate takes over
    assert eta.remaining() == pytest.approx(210.0)
    assert eta.eta() == "ETA 3 min 30 s"


def test_a_long_first_step_is_logged_with_an_eta_within_ten_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tracker = Tracker("fitting x (bayes)", unit="steps", clock=clock)
    with caplog.at_level(logging.INFO, logger="scalelaw"):
        tracker.guess(40.0)
        tracker.expect(3)
        tracker("sampling: 4 chains x 2000 steps")  # the start line, at once
        clock.now += 2
        tracker.tick()
        clock.now += 9  # the step still runs: a line every 10 s, with the ETA
        tracker.tick()
    lines = [r.getMessage() for r in caplog.records if r.name == "scalelaw"]
    assert lines[0].startswith("fitting x (bayes): started;")
    assert "ETA about 40 s" in lines[0]
    assert lines[-1] == (
        "fitting x (bayes): 0 of 3 steps done, 11 s elapsed, ETA about 29 s "
        "(now sampling: 4 chains x 2000 steps)"
    )


def test_durations_read_as_a_person_writes_them() -> None:
    assert duration(8.4) == "8 s"
    assert duration(125) == "2 min 05 s"
    assert duration(3780) == "1 h 03 min"
    assert duration(-3) == "0 s"


def test_log_lines_start_then_at_most_every_ten_seconds_with_counts_and_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tracker = Tracker("fitting", unit="fits", clock=clock)
    with caplog.at_level(logging.INFO, logger="scalelaw"):
        tracker.expect(4)
        tracker("fitting a (1 of 4)")  # the first step begins: the start line
        clock.now += 1
        tracker.tick()  # nothing due yet
        clock.now += 3
        tracker("fitting b (2 of 4)")  # the first ETA, 4 s after the start line
        clock.now += 3
        tracker("fitting c (3 of 4)")  # under 10 s since the last line: no line
        clock.now += 10
        tracker.tick()  # a long step: a line every 10 s all the same
        tracker.close()
        tracker.finished(failed=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "scalelaw"]
    assert lines == [
        "fitting: started; 0 of 4 fits done, 0 s elapsed, no ETA yet (now fitting a (1 of 4))",
        "fitting: 1 of 4 fits done, 4 s elapsed, ETA 12 s (now fitting b (2 of 4))",
        "fitting: 2 of 4 fits done, 17 s elapsed, ETA 4 s (now fitting c (3 of 4))",
        "fitting: finished: 3 of 4 fits done in 17 s",
    ]


def test_a_held_tracker_logs_nothing_for_quick_work_and_counts_held_steps_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`hold`: steps in the first `FIRST` seconds write no line (a quick fit's report is all it
    prints); the first line, once due, counts them."""
    clock, later = Clock(), Clock()
    quick = Tracker("fitting q (lsq)", clock=clock, hold=True)
    held = Tracker("fitting h (lsq)", clock=later, hold=True)
    with caplog.at_level(logging.INFO, logger="scalelaw"):
        quick.expect(3)
        for step in "abc":
            quick(step)
            clock.now += 0.4
        quick.close()
        quick.finished(failed=False)
        held.expect(5)
        held("a")
        later.now += 0.5
        held("b")
        later.now += progress.FIRST  # the next step is past FIRST: the first line, counted
        held("c")
    lines = [r.getMessage() for r in caplog.records if r.name == "scalelaw"]
    assert lines == [
        "fitting h (lsq): started; 2 of 5 steps done, 2 s elapsed, ETA 3 s (now c)",
    ]


def test_a_quick_run_that_logged_nothing_ends_silently(caplog: pytest.LogCaptureFixture) -> None:
    # an error in the first second (a bad table) is one error line, no progress around it
    with (
        caplog.at_level(logging.INFO, logger="scalelaw"),
        pytest.raises(RuntimeError),
        progress.track("fitting", quiet=False),
    ):
        raise RuntimeError("bad table")
    assert not [r for r in caplog.records if r.name == "scalelaw"]


def test_counting_callbacks_are_told_the_steps_and_plain_ones_are_only_called() -> None:
    from scalelaw.fits.progress import announce, messages_only

    tracker = Tracker("x", mode="off")
    announce(tracker, 6)
    announce(messages_only(tracker), 6)  # a nested call: already counted
    announce(lambda message: None, 6)  # a plain function has no `expect`: nothing happens
    assert tracker.eta.total == 6
    announce(tracker, -2)  # a form left out is not refitted
    assert tracker.eta.total == 4

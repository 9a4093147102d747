"""Progress: ETA arithmetic, plain log lines off a terminal, one redrawn line on a terminal."""

from __future__ import annotations

import io

import pytest

from mixscale.stages.progress import Progress, eta_seconds, format_duration


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("elapsed", "done", "total", "eta"),
    [(10.0, 1.0, 4.0, 30.0),  # a quarter done in 10 s: 30 s to go
     (30.0, 3.0, 4.0, 10.0),
     (5.0, 0.0, 4.0, None),  # no rate yet
     (0.0, 0.0, 0.0, 0.0),  # nothing to do
     (50.0, 4.0, 4.0, 0.0)],
)
def test_eta_seconds(elapsed, done, total, eta) -> None:
    assert eta_seconds(elapsed, done, total) == eta


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (0, "0s"), (59.4, "59s"),
                                               (75, "1m15s"), (3725, "1h02m")])
def test_format_duration(seconds, text) -> None:
    assert format_duration(seconds) == text


def test_eta_weighs_rows_by_size_and_counts_the_current_rows_epochs() -> None:
    clock = Clock()
    progress = Progress([100, 300], tty=False, clock=clock, echo=lambda line: None)
    progress.start_row("small", epochs=10)
    clock.now += 10
    progress.on_epoch(10)
    progress.finish_row("small done")  # 100 of 400 in 10 s
    assert progress.eta() == pytest.approx(30.0)
    progress.start_row("large", epochs=10)
    clock.now += 15
    progress.on_epoch(5)  # 100 + 150 of 400 in 25 s
    assert progress.done_work() == pytest.approx(250.0)
    assert progress.eta() == pytest.approx(25.0 * 150 / 250)


def test_a_row_taken_by_another_worker_leaves_the_count_and_the_eta() -> None:
    clock, lines = Clock(), []
    progress = Progress([100, 300, 100], tty=False, clock=clock, echo=lines.append)
    progress.start_row("row 0", epochs=10)
    clock.now += 10
    progress.finish_row("row 0 done")
    progress.skip_row("skipped: row 1 is RUNNING")  # its 300 images are not our work
    assert progress.total == 2 and lines[-1] == "skipped: row 1 is RUNNING"
    assert progress.eta() == pytest.approx(10.0)  # 100 of 200 in 10 s
    progress.start_row("row 2", epochs=10)
    progress.finish_row("row 2 done")
    assert lines[-1].startswith("[2/2] row 2 done")


def test_plain_mode_prints_one_line_per_row_and_throttled_evaluations() -> None:
    clock, lines = Clock(), []
    progress = Progress([1, 1], tty=False, clock=clock, echo=lines.append, log_every=60)
    progress.start_row("row 0", epochs=4)
    for epoch in range(1, 5):
        clock.now += 10
        progress.on_epoch(epoch)
        progress.on_eval(epoch, {"test_accuracy": 0.5})
    progress.finish_row("row 0 test_accuracy=0.500")
    assert lines == ["[1/2] row 0 test_accuracy=0.500 | elapsed 40s, ETA 40s"]
    progress.start_row("row 1", epochs=4)
    clock.now += 61  # a long evaluation gap: log it
    progress.on_epoch(1)
    progress.on_eval(1, {"test_accuracy": 0.25})
    assert lines[-1] == "[2/2] row 1 epoch 1/4 test_accuracy=0.250 | elapsed 1m41s, ETA 1m01s"
    clock.now += 10  # too soon for another
    progress.on_eval(2, {"test_accuracy": 0.3})
    assert len(lines) == 2
    progress.finish_row("row 1 done")
    assert lines[-1].startswith("[2/2] row 1 done | elapsed ")
    assert lines[-1].endswith("ETA 0s")


def test_plain_mode_never_writes_carriage_returns() -> None:
    stream = io.StringIO()
    progress = Progress([5], stream=stream, clock=Clock())  # StringIO is not a terminal
    assert not progress.tty
    progress.start_row("row 0", epochs=2)
    progress.on_epoch(1)
    progress.log("a failure")
    progress.finish_row("row 0")
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == ["a failure", "[1/1] row 0 | elapsed 0s, ETA 0s"]


def test_terminal_mode_draws_a_tqdm_bar_and_keeps_finished_rows() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock, stream = Clock(), Terminal()
    progress = Progress([1, 3], stream=stream, clock=clock, columns=120)
    assert progress.tty and progress.bar is not None
    progress.start_row("row 0", epochs=2)
    clock.now += 5
    progress.on_epoch(1)
    progress.on_eval(1, {"test_accuracy": 0.75})
    out = stream.getvalue()
    last = out.split("\r")[-1]  # the bar as drawn now: its text, then the bar itself
    assert last.startswith("[1/2] row 0 epoch 1/2 test_accuracy=0.750 | elapsed 5s, ETA 35s ")
    assert "\n" not in out and len(last) == 119
    assert progress.bar.n == pytest.approx(0.5) and progress.bar.total == 4  # work, by size
    progress.finish_row("row 0 finished")
    tail = stream.getvalue()[len(out):]
    assert "\r[1/2] row 0 finished | elapsed 5s, ETA 15s\n" in tail  # a permanent line
    progress.close()
    assert progress.bar is None
    assert stream.getvalue().endswith("\r" + " " * 119 + "\r")  # the bar is gone


def test_terminal_bar_is_cut_short_of_the_terminal_width() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress([1], stream=stream, clock=Clock(), columns=30)
    progress.start_row("a very long row label that would wrap", epochs=3)
    parts = stream.getvalue().split("\r")
    assert max(len(part) for part in parts) == 29  # cut, one column short: never wraps
    assert any(part.startswith("[1/1] a very long row") for part in parts)

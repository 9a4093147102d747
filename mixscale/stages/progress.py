"""Progress of a batch of training rows: rows done of total, the current row's epoch, an ETA.

On a terminal (``stream.isatty()``) a `tqdm <https://tqdm.github.io>`_ bar over the whole
batch's work is redrawn in place, its text the current row, epoch, last test accuracy, elapsed
time and ETA; every finished row leaves one permanent line above it (``tqdm.write``). Elsewhere
(a log file, ``mlflow run``, CI) there is no bar, only plain lines: one per finished row, plus one
per evaluation when at least ``log_every`` seconds have passed since the last line, so long rows
still show life.

The ETA weighs rows by their work (subset size; every row trains the same epochs), so a design
whose large rows come last is not promised an early finish: remaining time = elapsed time x
remaining work / work done.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from tqdm import tqdm

from mixscale.config import Echo

__all__ = ["Progress", "eta_seconds", "format_duration"]

def eta_seconds(elapsed: float, done_work: float, total_work: float) -> float | None:
    """Seconds left if the remaining work goes at the rate seen so far.

    Parameters
    ----------
    elapsed : float
        Seconds spent so far.
    done_work : float
        Work finished (for rows: sum of finished rows' sizes plus the current row's size times
        the share of its epochs done).
    total_work : float
        Work of every row.

    Returns
    -------
    float or None
        ``elapsed * (total_work - done_work) / done_work``; 0 when everything is done; None
        before any work is done (no rate yet).
    """
    if done_work >= total_work:
        return 0.0
    if done_work <= 0 or elapsed <= 0:
        return None
    return elapsed * (total_work - done_work) / done_work


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1m15s"``, ``3725`` -> ``"1h02m"``, ``None`` -> ``"?"``."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Progress of training ``len(weights)`` rows, one after another.

    Parameters
    ----------
    weights : sequence of float
        Work per row, in training order (its subset size).
    stream : text stream, optional
        Where the terminal's bar goes (default ``sys.stdout``); plain lines go to ``echo``.
    echo : callable, optional
        Prints one permanent line (default: write it to ``stream``).
    tty : bool, optional
        Force the terminal (True) or plain (False) mode; default ``stream.isatty()``.
    log_every : float
        In plain mode, seconds between evaluation lines of a long row.
    clock : callable
        Monotonic seconds (replaceable in tests).
    columns : int, optional
        Terminal width the bar is cut to (default: the terminal's, else 120).

    Call :meth:`close` when the batch is done (it removes the bar).
    """

    def __init__(self, weights: Sequence[float], *, stream: TextIO | None = None,
                 echo: Echo | None = None, tty: bool | None = None, log_every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, columns: int | None = None
                 ) -> None:
        self.weights = [float(w) for w in weights]
        self.stream = stream if stream is not None else sys.stdout
        self.echo = echo if echo is not None else self._write_line
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every = log_every
        self.clock = clock
        self.start = clock()
        self.done = 0  # rows finished
        self.label = ""  # the current row
        self.epoch, self.epochs = 0, 1
        self.accuracy: float | None = None  # the current row's last test accuracy
        self.last_line = self.start
        self.columns = columns or shutil.get_terminal_size(fallback=(120, 24)).columns
        self.bar: tqdm | None = None
        if self.tty:  # the work done is the bar's count; its text says the rest
            # one column short of the terminal: a line that fills it wraps and cannot be redrawn
            self.bar = tqdm(total=sum(self.weights), file=self.stream, ncols=self.columns - 1,
                            bar_format="{desc} {bar}", leave=False, mininterval=0,
                            dynamic_ncols=False)

    @property
    def total(self) -> int:
        """Rows to train."""
        return len(self.weights)

    def done_work(self) -> float:
        """Work finished: whole rows plus the current row's share of epochs."""
        current = self.weights[self.done] if self.done < self.total else 0.0
        return sum(self.weights[:self.done]) + current * self.epoch / max(self.epochs, 1)

    def eta(self) -> float | None:
        """Seconds left (see :func:`eta_seconds`)."""
        return eta_seconds(self.clock() - self.start, self.done_work(), sum(self.weights))

    def start_row(self, label: str, epochs: int) -> None:
        """A row begins: ``label`` names it (e.g. ``row 3 train n=480``)."""
        self.label, self.epoch, self.epochs, self.accuracy = label, 0, epochs, None
        self._status()

    def on_epoch(self, epoch: int) -> None:
        """The current row finished ``epoch`` (1-based)."""
        self.epoch = epoch
        self._status()

    def on_eval(self, epoch: int, metrics: dict[str, float]) -> None:
        """The current row was evaluated; in plain mode, log it if a line is due."""
        self.epoch, self.accuracy = epoch, metrics.get("test_accuracy")
        if self.tty:
            self._status()
        elif self.clock() - self.last_line >= self.log_every:
            self.log(self._line())

    def finish_row(self, message: str) -> None:
        """The current row is done: one permanent line with the overall ETA."""
        self.done += 1
        self.epoch = 0
        self.log(f"[{self.done}/{self.total}] {message} | elapsed "
                 f"{format_duration(self.clock() - self.start)}, ETA "
                 f"{format_duration(self.eta())}")

    def skip_row(self, message: str) -> None:
        """The next row is not trained here (another worker took it): drop it from the work."""
        if self.done < self.total:
            del self.weights[self.done]
        if self.bar is not None:
            self.bar.total = sum(self.weights)
        self.epoch = 0
        self.log(message)

    def log(self, line: str) -> None:
        """Print a permanent line (above the bar on a terminal)."""
        if self.bar is not None and self.echo == self._write_line:
            tqdm.write(line, file=self.stream)  # clears the bar, writes, redraws the bar
        elif self.bar is not None:
            with self.bar.external_write_mode(file=self.stream):
                self.echo(line)
        else:
            self.echo(line)
        self.last_line = self.clock()

    def close(self) -> None:
        """The batch is done: remove the bar (terminal mode only)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _line(self) -> str:
        acc = "" if self.accuracy is None else f" test_accuracy={self.accuracy:.3f}"
        return (f"[{self.done + 1}/{self.total}] {self.label} epoch {self.epoch}/{self.epochs}"
                f"{acc} | elapsed {format_duration(self.clock() - self.start)}, ETA "
                f"{format_duration(self.eta())}")

    def _status(self) -> None:
        if self.bar is None:
            return
        self.bar.n = min(self.done_work(), self.bar.total)
        self.bar.set_description_str(self._line(), refresh=False)
        self.bar.refresh()

    def _write_line(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

"""A long run's progress on stderr: a tqdm bar on a terminal, and plain lines, readable in
a CI log or a pipe, everywhere else."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

PLAIN_EVERY_S = 3.0  # a plain progress line at most this often (a CI log, a pipe)


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds}s" if seconds < 90 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """A long run's counts on stderr. On a terminal a tqdm bar (counts, failures, ETA);
    elsewhere (a CI log, a pipe) plain lines such as `batch: 12/40, 11 done, 1 failed,
    eta 8s`, at most every PLAIN_EVERY_S and one at the end, with no carriage return or
    escape code."""

    def __init__(
        self, label: str, total: int, kinds: Sequence[str], *, quiet: bool, unit: str
    ) -> None:
        self.label = label
        self.counts = dict.fromkeys(kinds, 0)
        self.total = total
        self.quiet = quiet
        self.unit = unit
        self.started = time.monotonic()
        self.printed_at = 0.0
        self.stream = sys.stderr
        self.bar: Any = None
        if not quiet and self.stream.isatty() and os.environ.get("TERM") != "dumb":
            from tqdm import tqdm  # type: ignore[import-untyped]

            try:  # a terminal that reports no size (some containers): 80x24
                sized = os.get_terminal_size(self.stream.fileno()).columns > 0
            except OSError:
                sized = False
            self.bar = tqdm(
                total=total,
                desc=label,
                unit=unit,
                file=self.stream,
                dynamic_ncols=sized,
                ncols=None if sized else 80,
                nrows=None if sized else 24,
            )
        elif not quiet:
            self._line(None)  # a log shows at once that the run began, and its size

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def update(self, total: int | None = None, **counts: int) -> None:
        """The absolute counts so far (and the total, when it grew)."""
        if total is not None:
            self.total = total
        self.counts.update(counts)
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.set_postfix_str(self._counts(), refresh=False)
            self.bar.update(self.finished - self.bar.n)
        elif not self.quiet and time.monotonic() - self.printed_at >= PLAIN_EVERY_S:
            self._line(self._eta())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            self._line(f"in {duration(time.monotonic() - self.started)}")

    def _counts(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.items())

    def _eta(self) -> str | None:
        finished = self.finished
        if not finished or finished >= self.total:
            return None  # nothing to go on yet, or nothing left
        elapsed = time.monotonic() - self.started
        return f"eta {duration(elapsed / finished * (self.total - finished))}"

    def _line(self, tail: str | None) -> None:
        self.printed_at = time.monotonic()
        line = f"{self.label}: {self.finished}/{self.total} {self.unit}s, {self._counts()}"
        print(f"{line}, {tail}" if tail else line, file=self.stream, flush=True)

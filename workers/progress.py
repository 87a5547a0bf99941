"""What a worker prints while it trains: which trial, which epoch, the dev metrics, a bar.

On a terminal the epoch line is redrawn in place (``\\r``); into a file or a pipe (a log, a
container) each epoch is one line, so logs stay readable. A worker running several trials at
once prefixes each line with its slot and never redraws, since lines of different slots would
overwrite each other.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

_WIDTH = 20
_SHOWN = 2


class Progress:
    def __init__(
        self, stream: TextIO | None = None, *, label: str | None = None, quiet: bool = False
    ) -> None:
        self.stream = stream or sys.stdout
        self.label = label
        self.quiet = quiet
        self.in_place = label is None and self.stream.isatty()
        self._open = False  # an in-place line is on screen, without its newline
        self._lock = threading.Lock()  # the heartbeat thread may say something mid-epoch

    def epoch(
        self, number: int, step: int, epochs: int, metrics: Mapping[str, float | None]
    ) -> None:
        if self.quiet:
            return
        text = epoch_line(number, step, epochs, metrics)
        with self._lock:
            if self.in_place:
                self.stream.write(f"\r{text}\x1b[K")
                self._open = True
            else:
                self.stream.write(self._prefix() + text + "\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._open:
                self.stream.write("\n")
                self._open = False
            self.stream.write(self._prefix() + text + "\n")
            self.stream.flush()

    def _prefix(self) -> str:
        return f"[{self.label}] " if self.label else ""


def epoch_line(number: int, step: int, epochs: int, metrics: Mapping[str, float | None]) -> str:
    """``trial 3 epoch  4/10 [########............] dev_accuracy=0.9123 dev_loss=0.301``"""
    done = min(_WIDTH, _WIDTH * step // epochs) if epochs > 0 else _WIDTH
    bar = "#" * done + "." * (_WIDTH - done)
    width = len(str(epochs))
    shown = [name for name in metrics if name.startswith("dev_")][:_SHOWN] or list(metrics)[:_SHOWN]
    values = " ".join(f"{name}={_value(metrics[name])}" for name in shown)
    return f"trial {number} epoch {step:>{width}}/{epochs} [{bar}] {values}".rstrip()


def _value(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "nan"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"

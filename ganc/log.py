"""Progress lines on stderr: in place on a terminal, a line per step of ~10% otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label = max(1, total), label
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = time.perf_counter()
        self._last_decile = -1

    def update(self, done: int, extra: str = "") -> None:
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - done) if done else 0.0
        line = (f"{self.label} {done}/{self.total} [{elapsed:.0f}s elapsed, eta {eta:.0f}s]"
                + (f" {extra}" if extra else ""))
        decile = done * 10 // self.total
        if self.tty:
            print("\r" + line, end="\n" if done >= self.total else "", file=self.stream,
                  flush=True)
        elif decile != self._last_decile or done >= self.total:
            print(line, file=self.stream, flush=True)
        self._last_decile = decile


def say(msg: str) -> None:
    """A progress line on stdout, flushed at once."""
    print(msg, file=sys.stdout, flush=True)

"""Progress on stderr for a step of unknown length (a calibration): never on stdout, so ``--json`` stays clean.

    with working("calibrate: searching the noise multiplier (PLD accountant)", enabled=not args.quiet):
        z = calibrate_noise_multiplier(...)

Nothing is shown for a step shorter than ``delay`` seconds. On a terminal the
line counts the seconds in place; elsewhere (a log, a pipe) it is one line
when the step starts to take long and one when it ends.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["working"]


@contextmanager
def working(what: str, *, enabled: bool = True, stream: TextIO | None = None, delay: float = 0.5,
            interval: float = 0.25) -> Iterator[None]:
    """Show ``what ... 3.2 s`` on ``stream`` (default: ``sys.stderr`` at entry) while the block runs."""
    if not enabled:
        yield
        return
    out = sys.stderr if stream is None else stream
    live = bool(getattr(out, "isatty", lambda: False)())
    carriage = "\r"
    started = time.perf_counter()
    done = threading.Event()
    shown = threading.Event()

    def tick() -> None:
        if done.wait(delay):
            return
        shown.set()
        if not live:
            out.write(f"{what} ...\n")
            out.flush()
            return
        while not done.is_set():
            out.write(f"\r{what} ... {time.perf_counter() - started:.1f} s")
            out.flush()
            done.wait(interval)

    thread = threading.Thread(target=tick, name="securefl-progress", daemon=True)
    thread.start()
    outcome = "stopped after"
    try:
        yield
        outcome = "done in"
    finally:
        done.set()
        thread.join()
        if shown.is_set():
            out.write(f"{carriage if live else ''}{what}: {outcome} {time.perf_counter() - started:.1f} s\n")
            out.flush()

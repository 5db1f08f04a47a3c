"""Stopping a run on request: SIGTERM (a scheduler preempting the job) and SIGINT (Ctrl-C).

Inside ``with StopSignals() as stop:`` the two signals only leave a note (``stop.requested``);
the loop reads it once per step, on every rank together (``check_in`` in distributed.py), saves
a checkpoint at the step it reached and ends with one line. A second Ctrl-C does not wait: it
raises ``KeyboardInterrupt`` at once (the last checkpoint written stays as it was).
Outside the block the signals act as usual.
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Note SIGTERM/SIGINT instead of dying, for the ``with`` block (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _note(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now
        self.signum = self.signum or signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        """128 + the signal number: how shells and schedulers recognise "stopped by a signal"."""
        return 128 + (self.signum or 0)

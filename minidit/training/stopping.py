"""Stopping a run on request: SIGTERM (a scheduler preempting the job) and SIGINT (Ctrl-C).

Inside ``with StopSignals() as stop:`` the two signals only leave a note (``stop.requested``);
the loop reads it once per step, on every rank together (``check_in`` in distributed.py), saves
a checkpoint at the step it reached and ends with one line. A second Ctrl-C does not wait: it
raises ``KeyboardInterrupt`` at once (the last checkpoint written stays as it was).

A process can only act on the note between two steps. One that is stuck -- typically waiting in
a collective for a process of the job that died, which is exactly when torchrun sends SIGTERM to
the survivors -- would never get there and would sit until the launcher's SIGKILL (30 s later
for torchrun). So a watchdog thread learns of the signal directly from the OS (Python's
``signal.set_wakeup_fd``, which works while the main thread is blocked) and ends the process
if the loop has not taken the note within ``grace_s`` seconds (at least three times the longest
step so far). Outside the block the signals act as usual.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Note SIGTERM/SIGINT instead of dying, for the ``with`` block (main thread only)."""

    def __init__(self, grace_s: float = 15.0):
        self.signum: int | None = None
        self.grace_s = grace_s
        self._previous: dict = {}
        self._seen = threading.Event()  # the loop has taken the note
        self._last_beat, self._longest_step = time.monotonic(), 0.0
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup_fd = -1

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():  # Python allows handlers only there
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._note)
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        self._old_wakeup_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        threading.Thread(target=self._watchdog, args=(read_end,), daemon=True, name="minidit-stop").start()
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._seen.set()  # the block is over: the watchdog has nothing left to guard
            os.close(self._pipe[1])  # the watchdog's read returns b"" and it ends
            self._pipe = None

    def _note(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now
        self.signum = self.signum or signum

    def beat(self) -> None:
        """The loop is between two steps (called every step); takes the note if there is one."""
        now = time.monotonic()
        self._longest_step = max(self._longest_step, now - self._last_beat)
        self._last_beat = now
        if self.signum is not None:
            self._seen.set()

    def _watchdog(self, read_end: int) -> None:
        try:
            while True:
                data = os.read(read_end, 1)
                if not data:
                    return
                if data[0] in SIGNALS:
                    break
            grace = max(self.grace_s, 3 * self._longest_step)
            if not self._seen.wait(grace):
                name = signal.Signals(data[0]).name
                print(f"stopping: no step finished within {grace:.0f} s of {name} (the process is stuck, e.g. "
                      f"waiting for one that died); exiting without a checkpoint", file=sys.stderr, flush=True)
                os._exit(128 + data[0])
        finally:
            os.close(read_end)

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

"""How minidit's command lines fail: one or two clear lines on stderr, never a traceback.

Every CLI (``python -m minidit.train``, ``sample``, ``extract``, ``evaluate``) runs its ``main``
through ``run_cli``:

* a user error (``ValueError``, a missing file, a full disk, any ``OSError``, a ``RunError``) prints
  ``error: <what is wrong and how to fix it>`` -- one line -- and exits 2, like argparse's usage
  errors;
* anything else (a bug, an error deep inside torch) prints ``error: <Type>: <first line>`` and a
  second line saying how to get the traceback, and exits 1;
* Ctrl-C prints ``interrupted`` and exits 130, as shells expect;
* ``--debug`` on the command line (or ``MINIDIT_DEBUG=1``) shows the full traceback instead.

Under torchrun several processes may fail together; ``ReportedElsewhere`` is how a process says
"another process has printed the reason, stop quietly", so an error is printed once, not once per
process. ``Stopped`` ends a run that stopped on purpose (a signal), with its exit code.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_ENV = "MINIDIT_DEBUG"
MAX_MESSAGE = 600  # characters of an unexpected error's message that are shown


class RunError(RuntimeError):
    """A run stopped for a reason its message explains (a NaN loss, a busy folder): not a bug."""


class ReportedElsewhere(Exception):
    """Stop with a non-zero exit and print only this message (often none): the cause is printed by
    another process of the job, or was already logged."""


class Stopped(Exception):
    """The run stopped on request (SIGTERM, SIGINT) after saving; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# errors a user can cause and fix: their message is the whole story
USER_ERRORS = (ValueError, OSError, RunError, NotImplementedError)
EXIT_USER_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


def add_debug_flag(parser) -> None:
    """The ``--debug`` flag every CLI shares (``run_cli`` reads it before the parser runs)."""
    parser.add_argument("--debug", action="store_true",
                        help=f"on an error, show the full Python traceback (or set {DEBUG_ENV}=1)")


def debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def _who() -> str:
    """`` (rank N)`` for a non-zero rank of a torchrun job, so a message says which process failed."""
    rank = os.environ.get("RANK", "0")
    return f" (rank {rank})" if rank != "0" and os.environ.get("WORLD_SIZE", "1") != "1" else ""


def describe(error: BaseException) -> tuple[str, int]:
    """The lines printed for ``error`` and the exit code (see the module docstring)."""
    if isinstance(error, Stopped):
        return "", error.exit_code  # the run already logged its one line
    if isinstance(error, ReportedElsewhere):
        return (f"error{_who()}: {error}" if str(error) else ""), 1
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(error, USER_ERRORS):
        message = str(error)
        if isinstance(error, OSError) and error.strerror:  # "[Errno 28] ..." -> the words only
            message = error.strerror + (f": {error.filename}" if error.filename else "")
        return f"error{_who()}: {message}", EXIT_USER_ERROR
    first = (str(error).strip().splitlines() or [""])[0][:MAX_MESSAGE]
    return (f"error{_who()}: {type(error).__name__}: {first}\n"
            f"(an unexpected error; rerun with --debug or {DEBUG_ENV}=1 for the full traceback)"), EXIT_BUG


def run_cli(main: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and exit with its return value when that is an int (else 0); on an error
    print one or two lines and exit non-zero (``--debug``: raise)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        result = main(argv)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - this is the one place that turns errors into lines
        if debug_requested(argv) and not isinstance(e, (Stopped, ReportedElsewhere)):
            raise
        text, code = describe(e)
        sys.stdout.flush()
        if text:
            print(text, file=sys.stderr, flush=True)
        sys.exit(code)
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)

"""What every minidit command line does with an error: one or two clear lines, never a traceback.

``python -m minidit.sample`` (and ``extract``, ``evaluate``, ...) end with
``run_cli(main)``. A bad input -- a missing file, a flag out of range, a corrupt checkpoint --
reaches the user as ``error: <what is wrong; how to fix it>`` and exit status 2. Anything else
(a bug, an environment problem) is one line naming the exception, a pointer to ``--debug`` and
exit status 1. ``--debug`` (or ``MINIDIT_DEBUG=1``) shows the full Python traceback instead.
Ctrl-C ends with ``interrupted`` and status 130, as shells expect.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

# the errors a user's input causes; their messages are written to be read on their own
USER_ERRORS = (ValueError, OSError, NotImplementedError, TimeoutError)
EXIT_USER_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--debug`` flag every command line offers (``run_cli`` reads it)."""
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full Python traceback instead of one line")


def format_error(err: BaseException) -> str:
    """The line(s) a user sees for ``err``; the rank is named in a multi-process run."""
    rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    where = f" (rank {rank})" if rank is not None else ""
    if isinstance(err, USER_ERRORS):
        return f"error{where}: {err}"
    return (f"error{where}: {type(err).__name__}: {err}\n"
            f"(unexpected: run again with --debug for the full traceback)")


def run_cli(main: Callable, argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and exit: its return value (an int, else 0), or a short error line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("MINIDIT_DEBUG", "0").lower() in ("1", "true", "yes")
    try:
        result = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 -- the point: no traceback unless asked for
        if debug:
            raise
        print(format_error(err), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR if isinstance(err, USER_ERRORS) else EXIT_BUG)
    sys.exit(result if isinstance(result, int) else 0)

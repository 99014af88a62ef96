"""What a paused plan does in the ``labcim`` commands: ask on a terminal, else abort.

Also how bluesky's own log reaches the terminal there: one line per error,
never a traceback (the commands report a plan's failure or abort themselves).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class OneLineLog(logging.Handler):
    """Prints ``name: message`` of a log record to stderr; records carrying an exception
    are left out, as the command reports that exception in its own words."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None:
            print(f"{record.name}: {record.getMessage()}", file=sys.stderr)


def quiet_bluesky_log() -> None:
    """Route bluesky's errors through :class:`OneLineLog` (once)."""
    log = logging.getLogger("bluesky")
    if not any(isinstance(h, OneLineLog) for h in log.handlers):
        handler = OneLineLog(logging.ERROR)
        log.addHandler(handler)


def pause_handler() -> Callable[[], bool] | None:
    """`ask_resume` when a person can answer on stdin, else ``None`` (abort, for cron/CI).

    Also quiets bluesky's log (:func:`quiet_bluesky_log`): a paused, resumed or aborted
    plan prints no traceback.
    """
    quiet_bluesky_log()
    return ask_resume if sys.stdin.isatty() else None


def ask_resume() -> bool:
    """Ask whether the paused plan resumes (True) or is aborted; Ctrl-C or EOF abort."""
    while True:
        try:
            answer = input("Paused. [r]esume or [a]bort? ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            return False
        if answer in ("r", "resume", "a", "abort"):
            return answer.startswith("r")

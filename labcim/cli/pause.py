"""What a paused plan does in the ``labcim`` commands: ask on a terminal, else abort."""

from __future__ import annotations

import sys
from collections.abc import Callable


def pause_handler() -> Callable[[], bool] | None:
    """`ask_resume` when a person can answer on stdin, else ``None`` (abort, for cron/CI)."""
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

"""A campaign's journal: what was dispatched where and what became of it, one JSON line each.

The journal says what happened (``dispatch``, ``running``, ``done``, ``failed``,
``lost``, ``requeue`` ...) with the station, the queue item and the run uids; it is for
people and tools reading the night's history.  What is *done* is still read from the
runs on disk (`labcim.campaign.runner.finished_steps`), so a journal lost or cut short
never makes a step count as done.  Each line is flushed and synced as it is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from labcim.campaign.schema import Campaign


def journal_path(campaign: Campaign) -> Path:
    """``<out>.<campaign id>.journal.jsonl``, beside the campaign's ``out`` location."""
    return campaign.out.parent / f"{campaign.out.name}.{campaign.id}.journal.jsonl"


class Journal:
    """Append-only JSON-lines file (opened for appending: earlier invocations stay)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, event: str, **fields: Any) -> None:
        """One line ``{"time": ..., "event": event, **fields}``, on disk when this returns."""
        line = json.dumps({"time": time.time(), "event": event, **fields}, default=str)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The entries of a journal; a last line cut short by a crash is left out."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries

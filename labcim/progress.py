"""A progress bar of a run's events (bluesky callback, tqdm).

bluesky's ``ProgressBarManager`` shows the statuses the RunEngine waits for (one pulse
batch, one read); :class:`EventProgress` shows where the plan stands: one tick per
``primary`` event out of the start document's ``num_points``, with the event's hinted
scalar fields (e.g. cells still out of tolerance) as the postfix.  Like tqdm's own
default it draws nothing when stderr is not a terminal (campaign logs, CI).  In a Jupyter
kernel it is tqdm's notebook widget when ipywidgets is installed; without ipywidgets it
falls back to the console bar quietly (``tqdm.auto`` would warn "IProgress not found"
in every plain notebook), which draws nothing there either.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from event_model import DocumentRouter


class EventProgress(DocumentRouter):
    """Progress bar over the events of one stream of each run.

    Parameters
    ----------
    stream : str
        The stream whose events are counted.
    disable : bool or None
        tqdm's ``disable``: None draws only on a terminal.
    """

    def __init__(self, stream: str = "primary", disable: bool | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.disable = disable
        self._bar: Any = None
        self._descriptors: dict[str, list[str]] = {}

    def start(self, doc: dict) -> None:
        self._close()
        self._descriptors.clear()
        self._bar = bar_class()(
            total=doc.get("num_points"),
            desc=doc.get("plan_name", "run"),
            unit="event",
            disable=self.disable,
            leave=False,
        )

    def descriptor(self, doc: dict) -> None:
        if doc.get("name") == self.stream:
            hints = doc.get("hints", {})
            self._descriptors[doc["uid"]] = [f for h in hints.values() for f in h.get("fields", [])]

    def event(self, doc: dict) -> None:
        fields = self._descriptors.get(doc["descriptor"])
        if fields is None or self._bar is None:
            return
        data = doc["data"]
        shown = {
            k: f"{data[k]:.4g}"
            for k in fields
            if k in data and np.ndim(data[k]) == 0 and isinstance(data[k], int | float)
        }
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(1)

    def stop(self, doc: dict) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def bar_class() -> type:
    """tqdm's notebook bar in a Jupyter kernel that has ipywidgets, else its console bar."""
    if "ipykernel" in sys.modules:
        try:
            import ipywidgets  # noqa: F401  (what tqdm's notebook bar is drawn with)
        except ImportError:
            pass
        else:
            from tqdm.auto import tqdm

            return tqdm
    from tqdm.std import tqdm

    return tqdm

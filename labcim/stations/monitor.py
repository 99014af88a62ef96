"""What a station is doing, for its clients: the running run's progress and the last run.

`StationMonitor` is a bluesky callback in the station's RE Worker.  It keeps, as plain
JSON, where the running run stands (``primary`` events out of the start document's
``num_points``, the latest hinted scalar figures) and the key figures of the last run
that ended (its ``summary`` event's scalars).  The station's startup code exposes
`StationMonitor.status` and `StationMonitor.figure` as queueserver functions
(``labcim_status``, ``labcim_figure``) that clients call with ``function_execute``
while a plan runs: the same 0MQ API as everything else, nothing extra to open.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DocumentRouter

from labcim.hdf5.layout import SUMMARY_STREAM

#: How many key figures of a run are reported (the summary's first scalars).
MAX_FIGURES = 8


def _scalars(data: dict[str, Any], limit: int) -> dict[str, float]:
    out = {}
    for key, value in data.items():
        number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if number and np.ndim(value) == 0 and np.isfinite(value):
            out[key] = float(value)
        if len(out) >= limit:
            break
    return out


class StationMonitor(DocumentRouter):
    """Progress of the running run and figures of the last one (thread-safe reads).

    Parameters
    ----------
    name : str
        The station's name (reported as is).
    results : Path
        The station's results directory, where the last run's file is found for its
        figure.
    """

    def __init__(self, name: str, results: Path) -> None:
        super().__init__()
        self.name = name
        self.results = Path(results)
        self._lock = threading.Lock()
        self._running: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None
        self._streams: dict[str, str] = {}
        self._hinted: dict[str, list[str]] = {}
        self._figure: tuple[str, str] | None = None  # (run uid, PNG as base64)

    def start(self, doc: dict) -> None:
        with self._lock:
            self._streams.clear()
            self._hinted.clear()
            self._running = {
                "uid": doc["uid"],
                "plan_name": doc.get("plan_name", ""),
                "step_key": doc.get("step_key", ""),
                "num_points": doc.get("num_points"),
                "events": 0,
                "started": doc.get("time", time.time()),
                "figures": {},
            }

    def descriptor(self, doc: dict) -> None:
        with self._lock:
            self._streams[doc["uid"]] = doc.get("name", "primary")
            hints = doc.get("hints", {})
            self._hinted[doc["uid"]] = [f for h in hints.values() for f in h.get("fields", [])]

    def event(self, doc: dict) -> None:
        stream = self._streams.get(doc["descriptor"])
        with self._lock:
            run = self._running
            if run is None:
                return
            if stream == "primary":
                run["events"] += 1
                data = doc["data"]
                hinted = {k: data[k] for k in self._hinted[doc["descriptor"]] if k in data}
                run["figures"] = _scalars(hinted, MAX_FIGURES)
            elif stream == SUMMARY_STREAM:
                run["summary"] = _scalars(doc["data"], MAX_FIGURES)

    def stop(self, doc: dict) -> None:
        with self._lock:
            run = self._running or {"uid": doc.get("run_start"), "plan_name": ""}
            self._running = None
            self._last = {
                "uid": run["uid"],
                "plan_name": run["plan_name"],
                "step_key": run.get("step_key", ""),
                "exit_status": doc.get("exit_status"),
                "ended": doc.get("time"),
                "figures": run.get("summary") or run.get("figures", {}),
            }

    def status(self) -> dict[str, Any]:
        """``{"name", "results", "running": {...} or None, "last": {...} or None}``.

        ``running`` has ``uid``, ``plan_name``, ``step_key``, ``events``,
        ``num_points`` (None if the plan does not say), ``progress`` (0-1 or None),
        ``started`` (s since the epoch) and ``figures`` (latest hinted scalars);
        ``last`` has ``uid``, ``plan_name``, ``step_key``, ``exit_status``, ``ended``
        and ``figures`` (its summary's scalars).
        """
        with self._lock:
            running = dict(self._running) if self._running else None
            last = dict(self._last) if self._last else None
        if running is not None:
            total = running["num_points"]
            running["progress"] = min(1.0, running["events"] / total) if total else None
        return {"name": self.name, "results": str(self.results), "running": running, "last": last}

    def figure(self) -> dict[str, Any]:
        """The last successful run's first figure (`labcim.plots.PLOTS`) as base64 PNG.

        Returns ``{"uid": ..., "png": ...}``: ``png`` is empty when the run's plan has no
        figure, both are without a successful run.  Drawn once per run, from its file.
        """
        with self._lock:
            last = self._last
        if not last or last["exit_status"] != "success":
            return {"uid": "", "png": ""}
        if self._figure is None or self._figure[0] != last["uid"]:
            self._figure = (last["uid"], _draw(self.results, last["uid"]))
        return {"uid": self._figure[0], "png": self._figure[1]}


def _draw(results: Path, uid: str) -> str:
    from labcim.hdf5 import open_runs
    from labcim.plots import PLOTS

    files = sorted(results.glob(f"run_*_{uid[:8]}.h5"))
    if not files:
        return ""
    run = open_runs(files[-1])[-1]
    for make in PLOTS.get(run.plan_name or "", {}).values():
        made = make(run)
        figures = list(made.values()) if isinstance(made, dict) else [made]
        if figures:
            buffer = io.BytesIO()
            figures[0].savefig(buffer, format="png", dpi=80)
            return base64.b64encode(buffer.getvalue()).decode()
    return ""

"""Asking a station what it does, through bluesky-queueserver-api only.

`station_state` gathers what ``labcim stations`` and the status page show: the RE
Manager's status (state, queue length, running item) and labcim's own report from the
worker (``labcim_status``: progress of the running run, figures of the last run),
called with ``function_execute`` in the background so it answers while a plan runs.
"""

from __future__ import annotations

import time
from typing import Any

from bluesky_queueserver_api import BFunc

from labcim.stations.registry import Station


def call_function(api: Any, name: str, timeout: float = 5.0) -> Any:
    """Run the worker function ``name`` in the background; return what it returned.

    Raises
    ------
    RuntimeError
        If the station refuses the call, or the function fails or does not finish
        within ``timeout`` s.
    """
    response = api.function_execute(BFunc(name), run_in_background=True)
    task = response["task_uid"]
    deadline = time.monotonic() + timeout
    while True:
        result = api.task_result(task)
        if result.get("status") == "completed":
            outcome = result["result"]
            if not outcome.get("success"):
                raise RuntimeError(f"{name} failed: {outcome.get('msg', '')}")
            return outcome["return_value"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not finish within {timeout} s")
        time.sleep(0.05)


def station_state(station: Station, timeout: float = 2.0) -> dict[str, Any]:
    """What ``station`` is doing, as JSON.

    Returns
    -------
    dict
        ``name``, ``chip``, ``control``, ``reachable`` (bool), ``error`` (why not),
        ``manager_state``, ``queue`` (items waiting), ``running_item`` (its plan
        name, or ""), and ``running``/``last`` of `StationMonitor.status`.
    """
    state: dict[str, Any] = {
        "name": station.name,
        "chip": station.chip,
        "control": station.control,
        "reachable": False,
        "error": "",
        "manager_state": "",
        "queue": 0,
        "running_item": "",
        "running": None,
        "last": None,
    }
    api = station.api(timeout=timeout)
    try:
        status = api.status(reload=True)
        state.update(
            reachable=True,
            manager_state=status["manager_state"],
            queue=status["items_in_queue"],
        )
        if status["running_item_uid"]:
            state["running_item"] = api.queue_get()["running_item"].get("name", "")
        if status["worker_environment_exists"]:
            report = call_function(api, "labcim_status", timeout)
            state.update(running=report["running"], last=report["last"])
    except Exception as exc:
        state["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        api.close()
    return state

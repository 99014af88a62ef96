"""What a station's queue costs: plans queued through bluesky-queueserver vs run in-process.

One ``labcim station`` (its own Redis-protocol server and RE Manager on loopback ports,
a temporary station registry) runs ``N`` short ``conductance_map`` plans, each queued
with bluesky-queueserver-api (``item_add``, ``queue_start``, waiting for the item in the
history), one after the other as a campaign dispatches them.  The baseline is the same
plans in one process: a RunEngine with the HDF5 writer on a board of the same URL.
Also measured: the station's start (until its worker environment is open) and the
round trip of an ``item_add`` that the plan's own check refuses (validation only).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Record, main

CHIP = "sim://pcm-small?cores=1&rows=16&cols=16&seed=3"
READS = 20


def _in_process_seconds(n: int, out: Path) -> float:
    from bluesky import RunEngine

    from labcim import HDF5Writer, connect
    from plans import conductance_map

    RE = RunEngine({})
    RE.subscribe(HDF5Writer(out))
    board = connect(CHIP)
    try:
        RE(conductance_map(board, reads=READS))  # warm: first run imports and allocates
        t0 = time.perf_counter()
        for _ in range(n):
            RE(conductance_map(board, reads=READS))
        return time.perf_counter() - t0
    finally:
        board.close()


def _queued(api, n: int) -> float:
    from bluesky_queueserver_api import BPlan

    def one() -> None:
        uid = api.item_add(BPlan("conductance_map", reads=READS))["item"]["item_uid"]
        api.queue_start()
        while not any(i["item_uid"] == uid for i in api.history_get(reload=True)["items"]):
            time.sleep(0.005)
        while api.status(reload=True)["manager_state"] != "idle":  # the API's own wait polls 1/s
            time.sleep(0.005)

    one()  # warm, as in-process
    t0 = time.perf_counter()
    for _ in range(n):
        one()
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[Record]:
    """Station start, refused-item round trip, and queued / in-process time of ``n`` plans."""
    try:
        import bluesky_queueserver_api  # noqa: F401
    except ImportError:  # the stations extra is optional
        return []
    from bluesky_queueserver_api import BPlan

    from labcim.stations.process import free_port
    from labcim.stations.registry import Station

    n = 5 if quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "LABCIM_STATIONS_DIR": str(root / "stations")}
        command = [sys.executable, "-m", "labcim.cli", "station", CHIP, "--name", "bench"]
        command += ["--results", str(root / "queued"), "--control-addr"]
        command += [f"tcp://127.0.0.1:{free_port()}", "--info-addr"]
        command += [f"tcp://127.0.0.1:{free_port()}"]
        t0 = time.perf_counter()
        station = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            station.stdout.readline()  # "station bench ready: ..."
            start = time.perf_counter() - t0
            entry = json.loads((root / "stations" / "bench.json").read_text())
            api = Station(**entry).api(timeout=30.0)
            t0 = time.perf_counter()
            for _ in range(10):
                try:
                    api.item_add(BPlan("conductance_map", reads=0))
                except api.RequestFailedError:
                    continue
                raise RuntimeError("an item with reads=0 was accepted")
            refused = (time.perf_counter() - t0) / 10
            queued = _queued(api, n)
            api.close()
        finally:
            station.send_signal(signal.SIGINT)
            station.wait(timeout=60)
        local = _in_process_seconds(n, root / "local")
    return [
        Record("station start (labcim station until ready)", start, "s"),
        Record("item_add refused by the plan's check: round trip", refused * 1e3, "ms"),
        Record(
            f"{n} conductance_map ({READS} reads) queued one by one / in-process",
            queued / local,
            "x",
            f"in-process RE + HDF5: {local / n * 1e3:.0f} ms per plan",
        ),
        Record("queue overhead per plan", (queued - local) / n * 1e3, "ms"),
    ]


if __name__ == "__main__":
    main(run)

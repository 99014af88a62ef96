"""What a station's queue costs: plans queued through bluesky-queueserver vs run in-process.

One ``labcim station`` (its own Redis-protocol server and RE Manager on loopback ports,
a temporary station registry) runs ``N`` short ``conductance_map`` plans, each queued
with bluesky-queueserver-api (``item_add``, ``queue_start``, waiting for the item in the
history), one after the other as a campaign dispatches them.  The baseline is the same
plans in one process: a RunEngine with the HDF5 writer on a board of the same URL; the
two alternate repeat by repeat.  Also measured: the station's start (until its worker
environment is open) and the round trip of an ``item_add`` that the plan's own check
refuses (validation only).
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

from bluesky import RunEngine

from benchmarks.harness import Record, interleave, main
from labcim import HDF5Writer, connect
from plans import conductance_map  # imported before the BLAS limit: scipy's BLAS with it

CHIP = "sim://pcm-small?cores=1&rows=16&cols=16&seed=3"
READS = 20


def _in_process_seconds(n: int, out: Path) -> float:
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

    n, repeats = (3, 2) if quick else (20, 3)
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

            def refused_item() -> float:
                t0 = time.perf_counter()
                try:
                    api.item_add(BPlan("conductance_map", reads=0))
                except api.RequestFailedError:
                    return time.perf_counter() - t0
                raise RuntimeError("an item with reads=0 was accepted")

            refused = interleave({"refused": refused_item}, 10)
            t = interleave(
                {
                    "queued": lambda: _queued(api, n),
                    "local": lambda: _in_process_seconds(n, root / "local"),
                },
                repeats,
            )
            api.close()
        finally:
            station.send_signal(signal.SIGINT)
            station.wait(timeout=60)
    name = f"{n} conductance_map ({READS} reads)"
    local = f"in-process RE + HDF5 ({t.median('local') / n * 1e3:.0f} ms per plan)"
    overhead = (t.seconds["queued"] - t.seconds["local"]) / n * 1e3
    return [
        refused.plain("station start (labcim station until ready)", start, "s"),
        Record.of(
            "item_add refused by the plan's check: round trip",
            refused.seconds["refused"] * 1e3,
            "ms",
            refused,
        ),
        t.ratio(f"{name} queued one by one / in-process", "queued", "local", local),
        Record.of(f"{name}: queue overhead per plan", overhead, "ms", t),
    ]


if __name__ == "__main__":
    main(run)

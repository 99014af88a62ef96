"""Test stations as a user starts them: ``labcim station`` processes on loopback ports.

Every server a test needs is started here and stopped at the end: the stations (each
with the Redis-protocol server labcim starts for it), and a tiled server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from labcim.stations.process import die_with_parent, free_port

LABCIM = [sys.executable, "-m", "labcim.cli"]


def station_env(stations_dir: Path) -> dict[str, str]:
    """The environment of every process of a test: its own station registry."""
    return {**os.environ, "LABCIM_STATIONS_DIR": str(stations_dir), "MPLBACKEND": "Agg"}


def _on_parent_death() -> None:
    die_with_parent(signal.SIGTERM)  # a crashed test run leaves no station behind


@contextlib.contextmanager
def running_stations(
    root: Path, chips: dict[str, str], timeout: float = 180.0
) -> Iterator[dict[str, subprocess.Popen]]:
    """``labcim station CHIP --name NAME`` for each entry, results in ``root/results/NAME``.

    Yields the processes by name once every station answers; stops them with SIGINT
    (as Ctrl-C would) at the end, killing what does not stop.
    """
    env = station_env(root / "stations")
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, chip in chips.items():
            log = open(root / f"{name}.out", "wb")  # noqa: SIM115 (closed with the process)
            command = [
                *LABCIM,
                "station",
                chip,
                "--name",
                name,
                "--results",
                str(root / "results" / name),
                "--control-addr",
                f"tcp://127.0.0.1:{free_port()}",
                "--info-addr",
                f"tcp://127.0.0.1:{free_port()}",
                "--files",
                str(root),
            ]
            procs[name] = subprocess.Popen(
                command,
                env=env,
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_on_parent_death,
            )
            log.close()
        deadline = time.monotonic() + timeout
        for name, proc in procs.items():
            path = root / "stations" / f"{name}.json"
            while not path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = (root / f"{name}.out").read_text(errors="replace")
                    raise RuntimeError(f"station {name} did not start:\n{output[-3000:]}")
                time.sleep(0.2)
        yield procs
    finally:
        running = [name for name, proc in procs.items() if proc.poll() is None]
        for name in running:
            procs[name].send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # Ctrl-C stops a station cleanly: status 0, its station file gone.
    unclean = [
        f"{name}: status {procs[name].returncode}"
        for name in running
        if procs[name].returncode != 0 or (root / "stations" / f"{name}.json").exists()
    ]
    assert not unclean, f"stations not stopped cleanly by SIGINT: {unclean}"


def station_file(root: Path, name: str) -> dict:
    """The registry entry of station ``name`` (control address, pids, results)."""
    return json.loads((root / "stations" / f"{name}.json").read_text())

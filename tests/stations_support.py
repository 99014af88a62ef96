"""Test stations as a user starts them: ``labcim station`` processes on loopback ports.

Every server a test needs is started here and stopped at the end: the stations (each
with the Redis-protocol server labcim starts for it), and ``labcim stations data`` (tiled).
Every wait has a deadline and says what it waited for (`wait_until`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from labcim.stations.process import die_with_parent, free_port, interrupt

LABCIM = [sys.executable, "-m", "labcim.cli"]
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """The first true value of ``condition()``, polled for ``timeout`` s; else fail on ``what``.

    An exception from ``condition`` counts as "not yet" (a server starting, a file being
    written) and is named in the failure; an `AssertionError` from it fails at once.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            value = condition()
        except AssertionError:
            raise
        except Exception as exc:
            value, last = None, f"; last error: {exc!r}"
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}{last}")
        time.sleep(interval)


def station_env(stations_dir: Path) -> dict[str, str]:
    """The environment of every process of a test: its own station registry."""
    return {**os.environ, "LABCIM_STATIONS_DIR": str(stations_dir), "MPLBACKEND": "Agg"}


def station_command(tmp_path: Path, *args: str, timeout: float = 120.0):
    """``labcim station ARGS`` run to its end in ``tmp_path``, with the test's own station
    registry (``tmp_path/stations``); the completed process, output captured."""
    return subprocess.run(
        [*LABCIM, "station", *args],
        env=station_env(tmp_path / "stations"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=tmp_path,
    )


def _on_parent_death() -> None:
    die_with_parent(signal.SIGTERM)  # a crashed test run leaves no station behind


@contextlib.contextmanager
def running_stations(
    root: Path,
    chips: dict[str, str],
    timeout: float = 180.0,
    options: dict[str, list[str]] | None = None,
) -> Iterator[dict[str, subprocess.Popen]]:
    """``labcim station CHIP --name NAME`` for each entry, results in ``root/results/NAME``,
    with the station's own further ``options`` (by name).

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
                *(options or {}).get(name, []),
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


@contextlib.contextmanager
def results_server(root: Path, log: Path, timeout: float = 180.0) -> Iterator[dict[str, Any]]:
    """``labcim stations data ROOT`` on a free port, its output in ``log`` (+ ``.err``).

    Yields ``{"tree": tiled client, "proc": the process, "url": ..., "key": API key}`` once
    tiled answers (files may still be being registered).  Stops it with SIGINT at the
    end and checks it stopped cleanly: status 0, and nothing answers on its port.
    """
    from tiled.client import from_uri

    port, key = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out, open(f"{log}.err", "wb") as err:
        proc = subprocess.Popen(
            [*LABCIM, "stations", "data", str(root), "--port", str(port), "--api-key", key],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_on_parent_death,
        )
    try:

        def answers() -> bool:
            assert proc.poll() is None, f"labcim stations data exited: {_tail(log)}"
            with urllib.request.urlopen(f"{url}/api/v1/", timeout=5):
                return True

        wait_until(answers, timeout, f"tiled to answer on {url}")
        yield {"tree": from_uri(url, api_key=key), "proc": proc, "url": url, "key": key}
    finally:
        interrupt(proc, grace=60)
    assert proc.returncode == 0, f"labcim stations data: status {proc.returncode}: {_tail(log)}"
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/api/v1/", timeout=5):
        raise AssertionError(f"tiled still answers on {url} after labcim stations data stopped")


def _tail(log: Path) -> str:
    return "\n".join(Path(path).read_text(errors="replace")[-3000:] for path in (log, f"{log}.err"))


def hdf5_datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of a file by every path to it (NXdata's hard links included)."""
    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", swmr=True) as f:

        def visit(name: str, link: h5py.HardLink) -> None:
            if isinstance(link, h5py.HardLink) and isinstance(f[name], h5py.Dataset):
                found[name] = dataset_values(f[name])

        f.visititems_links(visit)
    return found


def dataset_values(dataset: h5py.Dataset) -> np.ndarray:
    """A dataset's values as tiled serves them: text as str objects."""
    dataset.refresh()  # SWMR: what a writer added since the file was opened
    if h5py.check_string_dtype(dataset.dtype):
        return np.asarray(dataset.asstr()[()], dtype=object)
    return np.asarray(dataset[()])


def same_values(served: np.ndarray, stored: np.ndarray, growing: bool = False) -> bool:
    """Equal values; tiled gives a scalar as shape (1,); a growing dataset is read first."""
    if growing and stored.ndim and served.ndim == stored.ndim:
        stored = stored[: len(served)]
    if served.size != stored.size:
        return False
    return stored.size == 0 or np.array_equal(served.reshape(stored.shape), stored)

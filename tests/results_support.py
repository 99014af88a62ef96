"""Results locations for the data-safety tests: quick runs, damaged copies, the CLI."""

from __future__ import annotations

import hashlib
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
from bluesky import RunEngine
from bluesky.plans import count
from matplotlib.backends.backend_agg import FigureCanvasAgg
from ophyd.sim import det

from labcim.hdf5 import HDF5Writer

#: A simulated board and a plan that writes about 1.6 MB per run (two 128 x 128 maps).
SIM = "sim://pcm-small?cores=2&seed=3"
MAP_RUN = ("conductance_map", "--chip", SIM, "-p", "cores=[0,1]")


def quick_runs(location: Path, n: int = 3) -> list[Path]:
    """Write ``n`` small finished runs at ``location``; return their files."""
    RE = RunEngine({})
    writer = HDF5Writer(location)
    RE.subscribe(writer)
    for i in range(n):
        RE(count([det], num=2 + i), plan_name="count")
    return writer.location.run_files()


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(directory: Path) -> dict[str, str]:
    """SHA-256 of every file in ``directory`` (recursively) by relative path."""
    return {
        str(p.relative_to(directory)): digest(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def truncated_copy(source: Path, target: Path, fraction: float = 0.5) -> Path:
    """An interrupted copy: the first ``fraction`` of ``source``'s bytes at ``target``."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def set_document(path: Path, group: str, text: str) -> None:
    """Replace the stored JSON document of ``group`` (e.g. ``entry/metadata``)."""
    with h5py.File(path, "r+") as file:
        file[group].attrs["labcim_document"] = text


@dataclass
class Result:
    """How a ``labcim`` process ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    file_size_limit: int | None = None,
) -> Result:
    """Run ``labcim *args`` in a fresh process and wait for it (at most ``timeout`` s).

    ``file_size_limit`` (bytes) makes writes past it fail with EFBIG from the kernel,
    as on a file system with a size limit.
    """

    def limits() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "labcim.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            cwd=cwd,
            preexec_fn=limits,
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"labcim {' '.join(args)} did not end within {timeout} s"
            ) from None
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Result(process.returncode, out.read(), err.read(), seconds)


_MEASURED = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
"""


def resource_usage(*args: str, env: dict[str, str] | None = None) -> tuple[int, int, float]:
    """Exit status, peak resident memory (KiB) and CPU time (user + system, s) of
    ``labcim *args`` in a fresh process.

    CPU time, unlike wall time, hardly grows when other work loads the machine.

    Linux carries a process's peak over ``exec``, so a child forked from this (large)
    test process would report this process's size: the command is started by a small
    fresh interpreter instead, which reads its child's rusage with ``wait4``.
    """
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURED, sys.executable, "-m", "labcim.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    status, peak, cpu = measured.stdout.split()
    return int(status), int(peak), float(cpu)


_KILLED_WRITER = """
import os, sys
from bluesky import RunEngine
from bluesky.plans import count
from ophyd import Signal
from labcim.hdf5 import HDF5Writer

det = Signal(name="det", value=1.0)  # not ophyd.sim's: its import leaves a directory behind
RE = RunEngine({})
RE.subscribe(HDF5Writer(sys.argv[1], flush_interval=0.01))
RE.subscribe(lambda name, doc: os._exit(0) if name == "event" and doc["seq_num"] == 4 else None)
RE(count([det], num=10, delay=0.1), plan_name="count")
"""


def killed_run(location: Path) -> Path:
    """A run whose writer died after 3 events were flushed: its file still says open."""
    before = set(location.glob("run_*.h5")) if location.is_dir() else set()
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(location)], check=True, timeout=60)
    (path,) = set(location.glob("run_*.h5")) - before
    return path


def titles_inside(fig: Any) -> bool:
    """Whether every title of ``fig`` (its suptitle, a figure text, and each axes' title)
    is drawn within the figure."""
    canvas = FigureCanvasAgg(fig)  # as the PNG is drawn
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    for text in [*fig.texts, *(ax.title for ax in fig.axes)]:
        if not text.get_text():
            continue
        extent = text.get_window_extent(renderer)
        if extent.x0 < box.x0 - 1 or extent.x1 > box.x1 + 1:
            return False
    return True

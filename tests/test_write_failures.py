"""A full disk or a failing write: exit 1 with one line, the run recorded, nothing earlier hurt."""

import errno
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.plans import count
from ophyd import Signal
from ophyd.sim import det
from results_support import MAP_RUN, cli, digests, quick_runs

from labcim.hdf5 import HDF5Writer, open_runs


def one_failure_line(done, errno_text):
    """The CLI's stderr: exactly one line, naming a run file and the system's reason."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("labcim run: conductance_map: ")
    assert "cannot write " in lines[0] and errno_text in lines[0]
    return lines[0]


def copy_of(location, directory):
    """A copy of the results ``location`` (index file and its runs) in ``directory``."""
    copy = directory / location.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(location, copy)
    shutil.copytree(f"{location}.runs", f"{copy}.runs")
    return copy


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A results location holding one finished conductance_map run."""
    location = tmp_path_factory.mktemp("first") / "results.h5"
    done = cli("--quiet", "run", *MAP_RUN, "--out", str(location))
    assert done.returncode == 0, done.stderr
    return location


@pytest.mark.slow
def test_a_full_file_system_ends_the_run_with_one_line_and_a_fail_record(first_run, tmp_path):
    location = copy_of(first_run, tmp_path)
    before = digests(tmp_path)
    size = sum(p.stat().st_size for p in (tmp_path / "results.h5.runs").iterdir())
    done = cli("--quiet", "run", *MAP_RUN, "--out", str(location), file_size_limit=size // 2)
    assert done.returncode == 1  # was -11: SIGSEGV after dozens of h5py tracebacks
    one_failure_line(done, "File too large")
    after = digests(tmp_path)
    old_run = next(name for name in before if name.startswith("results.h5.runs/"))
    assert after[old_run] == before[old_run]  # the earlier run, byte for byte
    runs = open_runs(location)
    assert [r.exit_status for r in runs] == ["success", "fail"]
    assert "File too large" in runs[1].reason


@pytest.mark.slow
def test_at_every_stage_of_a_run_a_size_limit_gives_one_line(first_run, tmp_path):
    size = next(first_run.with_name("results.h5.runs").iterdir()).stat().st_size
    seen = set()
    for limit in (2_000, size // 2, size + size // 3):  # the start, the maps, the summary
        location = copy_of(first_run, tmp_path / str(limit))
        before = digests(location.parent)
        done = cli("--quiet", "run", *MAP_RUN, "--out", str(location), file_size_limit=limit)
        assert done.returncode == 1, (limit, done.stderr[-2000:])
        one_failure_line(done, "File too large")
        after = digests(location.parent)
        assert {k: after[k] for k in before if k != "results.h5"} == {
            k: v for k, v in before.items() if k != "results.h5"
        }
        runs = open_runs(location)
        assert runs[0].exit_status == "success"
        if len(runs) == 1:
            seen.add("refused before the run file")
            continue
        new = runs[1]
        assert new.exit_status == "fail" and "File too large" in new.reason
        primary = new.streams["primary"]
        np.testing.assert_array_equal(primary.seq_num, np.arange(1, len(primary) + 1))
        seen.add(f"refused after {len(primary)} map event(s)")
    stages = {"refused before the run file", "refused after 0 map event(s)"}
    assert seen == {*stages, "refused after 1 map event(s)"}


def tmpfs(path, megabytes):
    """Mount a tmpfs of ``megabytes`` at ``path`` (root only); None if not allowed."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
    )
    return path if mounted.returncode == 0 else None


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system: no space left after one conductance map run."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmpfs(tmp_path / "disk", 4)
    if disk is None:
        pytest.skip("tmpfs cannot be mounted here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_no_space_left_on_a_real_file_system(small_disk, first_run):
    location = copy_of(first_run, small_disk)
    before = digests(small_disk)
    done = cli("--quiet", "run", *MAP_RUN, "-p", "reads=4", "--out", str(location))
    assert done.returncode == 1
    one_failure_line(done, "No space left on device")
    after = digests(small_disk)
    assert all(after[name] == digest for name, digest in before.items() if "runs/" in name)
    runs = open_runs(location)
    assert [r.exit_status for r in runs] == ["success", "fail"]
    shown = cli("show", str(location))
    assert shown.returncode == 0
    assert any(
        line.startswith("run 2  conductance_map  fail") for line in shown.stdout.splitlines()
    )


@pytest.mark.slow
def test_a_campaign_on_a_full_disk_stops_with_status_1(small_disk):
    campaign = small_disk / "night.yaml"
    campaign.write_text(
        f"id: night\nchip: '{MAP_RUN[2]}'\nout: results\nsteps:\n"
        "  - plan: conductance_map\n    args: {cores: [0]}\n"
        "  - plan: conductance_map\n    args: {cores: [0, 1], reads: 4}\n"
        "  - plan: conductance_map\n    args: {cores: [1]}\n"
    )
    done = cli("--quiet", "campaign", str(campaign))
    assert done.returncode == 1, done.stderr
    assert "1 succeeded, 1 failed, 0 done before, of 3 steps" in done.stdout
    assert "stopped: I/O error in 02-conductance_map" in done.stderr
    assert "Traceback" not in done.stderr
    runs = open_runs(small_disk / "results")
    assert [r.exit_status for r in runs] == ["success", "fail"]


class FailingFsync:
    """``os.fsync`` that fails with EIO at its ``n``-th call, as a dying disk does."""

    def __init__(self, n):
        self.n, self.calls, self.real = n, 0, os.fsync

    def __call__(self, fd):
        self.calls += 1
        if self.calls == self.n:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return self.real(fd)


def three_streams():
    """A run with a primary, a baseline and a summary stream: many places to fail."""
    summary = Signal(name="score", value=0.5)

    @bpp.run_decorator(md={"plan_name": "three_streams"})
    def inner():
        yield from bps.trigger_and_read([det], name="baseline")
        for _ in range(4):
            yield from bps.trigger_and_read([det])
        yield from bps.trigger_and_read([summary], name="summary")

    return (yield from inner())


def test_an_io_error_at_any_point_fails_that_run_only(tmp_path, monkeypatch):
    earlier = quick_runs(tmp_path, 1)[0]
    before = earlier.read_bytes()
    RE = RunEngine({})
    # Flushes at every document but the start (which the first flush syncs) and at the
    # stop, on the RunEngine's thread: the same points in every run.
    writer = HDF5Writer(tmp_path, flush_interval=60, max_buffer_bytes=0)
    RE.subscribe(writer)
    calls = FailingFsync(0)
    monkeypatch.setattr(os, "fsync", calls)
    RE(three_streams())
    points = calls.calls  # every fsync of one whole run: descriptors, events, stop
    assert points >= 6
    for n in range(1, points + 1):
        monkeypatch.setattr(os, "fsync", FailingFsync(n))
        with pytest.raises(OSError, match=r"cannot write .*run_\d+_\w+\.h5: Input/output error"):
            RE(three_streams())
        monkeypatch.setattr(os, "fsync", calls.real)
        RE(count([det], num=2))  # the writer goes on with the next run
    assert earlier.read_bytes() == before
    runs = open_runs(tmp_path)
    assert [r.exit_status for r in runs[3::2]] == ["success"] * points
    failed = [r.exit_status for r in runs[2::2]]
    # The last fsync comes after the stop document reached the OS: that run is whole.
    assert failed[:-1] == ["incomplete"] * (points - 1) and failed[-1] == "success"
    for run in runs[2::2]:  # what an I/O error left: whole rows only
        for stream in run.streams.values():
            np.testing.assert_array_equal(stream.seq_num, np.arange(1, len(stream) + 1))


def test_data_that_do_not_fit_fail_the_run_with_its_stop_document(tmp_path):
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(tmp_path))
    sig = Signal(name="trace", value=np.zeros(3))

    @bpp.run_decorator(md={"plan_name": "growing"})
    def growing():
        for n in (3, 3, 5):  # the third reading changes shape
            sig.put(np.arange(n, dtype=float))
            yield from bps.trigger_and_read([sig])

    with pytest.raises(ValueError, match="trace"):
        RE(growing())
    (run,) = open_runs(tmp_path)
    assert run.exit_status == "fail" and "trace" in run.reason  # was "incomplete"
    assert len(run.streams["primary"]) == 0  # the batch that failed is not half there
    with h5py.File(run.path) as file:  # closed properly: a plain open works
        assert file["entry/stop"].attrs["labcim_document"]

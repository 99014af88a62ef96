"""Bad input makes the run fail loudly, naming the offending path or key."""

import itertools

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from hdf5_plans import fill_disk, start_child
from ophyd.sim import SynSignal, det

from labcim.hdf5 import HDF5Writer, open_runs
from labcim.hdf5.reader import DamagedRunWarning


def test_unwritable_path_fails_at_construction(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="a_file"):
        HDF5Writer(blocker / "results.h5")


def test_run_fails_when_its_directory_became_unwritable(tmp_path):
    RE = RunEngine({})
    writer = HDF5Writer(tmp_path / "runs")
    RE.subscribe(writer)
    (tmp_path / "runs").rmdir()
    (tmp_path / "runs").write_text("not a directory any more")
    with pytest.raises(OSError, match="runs/run_000001_"):
        RE(count([det], num=2))


def test_run_fails_naming_its_directory_when_that_was_removed(tmp_path):
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(tmp_path / "runs"))
    (tmp_path / "runs").rmdir()
    with pytest.raises(OSError, match=r"^\[Errno 2\] cannot write .*/runs: No such file"):
        RE(count([det], num=2))


def test_non_json_metadata_names_the_key_and_writes_nothing(tmp_path):
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(tmp_path))
    with pytest.raises(TypeError, match=r"'sample\.holder'.*object"):
        RE(count([det], num=2), sample={"holder": object()})
    assert len(open_runs(tmp_path)) == 0
    RE(count([det], num=2))  # the writer is still usable afterwards
    assert open_runs(tmp_path)[0].exit_status == "success"


def test_full_disk_fails_the_run_and_keeps_what_was_flushed(tmp_path):
    child = start_child(fill_disk, tmp_path, 3 * 2**20)
    child.join(60)
    assert child.exitcode == 0, "the run did not fail with one line naming its file"
    (run,) = open_runs(tmp_path)
    assert run.exit_status == "fail" and "File too large" in run.reason
    primary = run.streams["primary"]
    assert 4 <= len(primary) < 40
    np.testing.assert_array_equal(primary.seq_num, np.arange(1, len(primary) + 1))
    assert (primary["img"].reshape(len(primary), -1).mean(axis=1) > 0.4).all()  # no fill


@pytest.mark.slow
def test_a_write_failing_inside_hdf5_exits_cleanly_and_names_the_file(tmp_path):
    child = start_child(fill_disk, tmp_path, 3 * 2**20, False)
    child.join(60)
    assert child.exitcode == 0, f"exit code {child.exitcode} (-11: SIGSEGV in HDF5)"
    # The file system refused the file's tail: what HDF5 recorded is not all there.
    with pytest.warns(DamagedRunWarning, match=r"run_000001_\w+\.h5: truncated"):
        assert not open_runs(tmp_path)


@pytest.mark.parametrize("side", [8, 256])  # stacked into one column / written row by row
def test_a_frame_changing_shape_fails_the_run_naming_the_key(tmp_path, side):
    reads = itertools.count()  # bluesky reads once more than it records: describe
    img = SynSignal(func=lambda: np.ones((side, side if next(reads) < 4 else 4)), name="img")
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(tmp_path))
    with pytest.raises(ValueError, match=r"data key 'img'.*differing shapes"):
        RE(count([img], num=4))
    (run,) = open_runs(tmp_path)
    assert run.exit_status == "fail" and "differing shapes" in run.reason
    assert len(run.streams["primary"]) == 0  # none of the batch that did not fit

"""Nothing labcim did not write is overwritten: ``--out`` and `HDF5Writer` refuse it."""

import os
import socket

import h5py
import matplotlib.figure
import numpy as np
import pytest
from campaign_helpers import plugin_fixture  # noqa: F401  (the fixture "plugin")
from results_support import cli, digest, quick_runs

from labcim.hdf5 import HDF5Writer, open_runs
from labcim.hdf5.layout import Location
from labcim.hdf5.output import ForeignFileError, check_output, place_file


def foreign_hdf5(path):
    with h5py.File(path, "w") as file:
        file["measurement"] = np.arange(12.0)
        file.attrs["creator"] = "another program"
    return path


def foreign_files(tmp_path):
    """Files at a would-be index path that labcim must not replace, by case."""
    text = tmp_path / "notes.h5"
    text.write_text("my notes, not HDF5\n")
    (tmp_path / "results").mkdir()
    inside = foreign_hdf5(tmp_path / "results" / "index.h5")  # a directory's index path
    (run,) = quick_runs(tmp_path / "labcim", 1)
    return {
        "other program's HDF5": (foreign_hdf5(tmp_path / "mine.h5"), tmp_path / "mine.h5"),
        "text file ending in .h5": (text, text),
        "index.h5 of a directory": (inside, tmp_path / "results"),
        "a labcim run file": (run, run),
    }


@pytest.mark.parametrize(
    "case",
    [
        "other program's HDF5",
        pytest.param("text file ending in .h5", marks=pytest.mark.slow),
        pytest.param("index.h5 of a directory", marks=pytest.mark.slow),
        pytest.param("a labcim run file", marks=pytest.mark.slow),
    ],
)
def test_run_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, plugin, case):
    victim, out = foreign_files(tmp_path)[case]
    before, names = digest(victim), sorted(os.listdir(victim.parent))
    done = cli("--quiet", "run", "slow_count", "--chip", "none", "--out", str(out), env=plugin)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"labcim run: {victim}: exists and is not a labcim index")
    assert "labcim never overwrites it" in line
    assert digest(victim) == before  # byte for byte
    assert sorted(os.listdir(victim.parent)) == names  # no run directory made either


@pytest.mark.slow
def test_the_path_is_refused_before_the_board_is_connected(tmp_path, plugin):
    victim = foreign_hdf5(tmp_path / "mine.h5")
    board = socket.create_server(("127.0.0.1", 0))  # a board that records connections
    board.setblocking(False)
    url = f"socket://127.0.0.1:{board.getsockname()[1]}"
    done = cli("--quiet", "run", "conductance_map", "--chip", url, "--out", str(victim))
    assert done.returncode == 2 and "mine.h5: exists" in done.stderr
    with pytest.raises(BlockingIOError):  # nobody ever connected
        board.accept()
    board.close()


@pytest.mark.slow
def test_a_labcim_index_is_appended_to(tmp_path, plugin):
    out = tmp_path / "results.h5"
    for _ in range(2):
        done = cli("--quiet", "run", "slow_count", "--chip", "none", "--out", str(out), env=plugin)
        assert done.returncode == 0, done.stderr
    runs = open_runs(out)
    assert [run.number for run in runs] == [1, 2]
    with h5py.File(out) as index:  # rebuilt whole, with a link to each run
        assert sorted(index) == [p.stem for p in Location.from_path(out).run_files()]
        assert index.attrs["labcim_format"] == "labcim-index/1"
    assert not list(tmp_path.glob(".results.h5.*"))  # no temporary left behind


def test_an_index_written_before_indexes_were_marked_is_appended_to(tmp_path):
    out = tmp_path / "old.h5"
    (run,) = quick_runs(out, 1)
    with h5py.File(out, "w") as index:  # exactly what earlier labcim versions wrote
        index.attrs["NX_class"] = "NXroot"
        index.attrs["default"] = run.stem
        index[run.stem] = h5py.ExternalLink(f"old.h5.runs/{run.name}", "/entry")
    quick_runs(out, 1)
    assert len(open_runs(out)) == 2


def test_the_python_writer_refuses_too_and_changes_nothing(tmp_path):
    victim = foreign_hdf5(tmp_path / "mine.h5")
    before = digest(victim)
    with pytest.raises(ForeignFileError, match=r"mine\.h5: exists and is not a labcim index"):
        HDF5Writer(victim)
    assert digest(victim) == before and sorted(os.listdir(tmp_path)) == ["mine.h5"]


def test_a_foreign_file_appearing_at_the_index_path_later_is_not_replaced(tmp_path):
    out = tmp_path / "results.h5"
    writer_runs = quick_runs(out, 1)
    assert len(writer_runs) == 1
    out.unlink()
    foreign_hdf5(out)  # someone else writes there between two runs
    before = digest(out)
    with pytest.raises(ForeignFileError):
        quick_runs(out, 1)
    assert digest(out) == before


def test_a_symbolic_link_or_a_file_where_the_runs_go_is_refused(tmp_path):
    target = foreign_hdf5(tmp_path / "target.h5")
    (tmp_path / "link.h5").symlink_to(target)
    with pytest.raises(ForeignFileError, match="symbolic link"):
        check_output(tmp_path / "link.h5")
    (tmp_path / "data.h5.runs").write_text("a file, not the run directory")
    with pytest.raises(ForeignFileError, match=r"data\.h5\.runs: exists and is not a directory"):
        check_output(tmp_path / "data.h5")


@pytest.mark.slow
def test_dot_is_a_results_directory_for_run_and_show(tmp_path, plugin):
    done = cli(
        "--quiet", "run", "slow_count", "--chip", "none", "--out", ".", env=plugin, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    shown = cli("show", ".", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "slow_count" in shown.stdout and "success" in shown.stdout
    assert (tmp_path / "index.h5").is_file()


def test_a_run_file_is_never_renamed_over_an_existing_file(tmp_path):
    source, target = tmp_path / "new.partial", tmp_path / "run_000001_abc.h5"
    source.write_text("new")
    target.write_text("someone's")
    with pytest.raises(ForeignFileError, match=r"run_000001_abc\.h5: exists"):
        place_file(source, target)
    assert target.read_text() == "someone's" and source.exists()


@pytest.mark.slow
def test_a_campaign_whose_out_is_a_foreign_file_is_refused_before_running(tmp_path, plugin):
    victim = foreign_hdf5(tmp_path / "mine.h5")
    before = digest(victim)
    campaign = tmp_path / "c.yaml"
    campaign.write_text("chip: none\nout: mine.h5\nsteps:\n  - plan: slow_count\n")
    for extra in (["--dry-run"], []):
        done = cli("--quiet", "campaign", str(campaign), *extra, env=plugin)
        assert done.returncode == 2, done.stderr
        assert f"out: {victim}: exists and is not a labcim index" in done.stderr
    assert digest(victim) == before and not (tmp_path / "mine.h5.runs").exists()


def _png_of_another_program(path):
    """A real PNG image, as matplotlib writes it for anyone (no labcim mark)."""
    figure = matplotlib.figure.Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    figure.savefig(path)
    return path


@pytest.mark.slow  # five labcim processes
def test_show_writes_its_tables_and_figures_again_but_never_over_other_files(tmp_path):
    done = cli(
        "-q",
        "run",
        "conductance_map",
        "--chip",
        "sim://pcm-small?cores=1&seed=2",
        "--out",
        "r.h5",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for _ in range(2):  # the second time replaces what the first wrote
        shown = cli("show", "r.h5", "--csv", "tables", "--plot", "--out", "figures", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert {p.name for p in (tmp_path / "tables").iterdir()} == {
            "key_figures.csv",
            "run000001_primary.csv",
            "run000001_summary.csv",
        }
        assert [p.name for p in (tmp_path / "figures").iterdir()] == [
            "run000001_conductance_map_core0.png"
        ]
    # Another program's table, or a figure matplotlib made for someone else, in the way:
    (tmp_path / "mine").mkdir()
    notes = tmp_path / "mine" / "key_figures.csv"
    notes.write_text("wafer,die\nW7,C3\n")
    picture = _png_of_another_program(tmp_path / "mine" / "run000001_conductance_map_core0.png")
    before = {p.name: digest(p) for p in (tmp_path / "mine").iterdir()}
    for option in (["--csv", "mine"], ["--plot", "--out", "mine"]):
        shown = cli("show", "r.h5", *option, cwd=tmp_path)
        assert shown.returncode == 2, shown.stderr
        (line,) = shown.stderr.splitlines()
        name = (notes if option[0] == "--csv" else picture).relative_to(tmp_path)
        assert line == (
            f"labcim show: {name}: exists and is not a {'table' if '--csv' in option else 'figure'}"
            " labcim wrote; labcim never overwrites it: give another output path"
        )
        assert {p.name: digest(p) for p in (tmp_path / "mine").iterdir()} == before

"""Issue 14: ``labcim show`` and the tables: key figures and figures for every plan (I-V
loops and forming too), ``--follow`` on a campaign another process is writing, and the
tabular export (CSV; pandas when installed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from hdf5_plans import one_stream
from pause_support import Interrupt, pause_now
from plans_support import formed_and_swept
from results_support import titles_inside

import labcim
from labcim import plots
from labcim.engine import run_engine
from labcim.export import dataframe, key_figures_frame, write_csv
from labcim.key_figures import iv_switching, key_figures
from labcim.plots import save_run_plots
from plans import conductance_map, mvm_characterization

LABCIM = [sys.executable, "-m", "labcim.cli"]


@pytest.fixture(scope="module")
def iv_runs(tmp_path_factory):
    """A forming run, then 4 I-V cycles of the formed device, on the simulated SMU."""
    return formed_and_swept(tmp_path_factory.mktemp("iv") / "iv.h5", 4)


def test_iv_sweep_key_figures_are_switching_voltages_and_conductances(iv_runs, tmp_path):
    run = iv_runs[1]
    sw = iv_switching(run)
    assert len(sw["cycle"]) == 4
    assert np.all((sw["set_voltage"] > 0) & (sw["set_voltage"] <= 1.5))
    assert np.all((sw["reset_voltage"] < 0) & (sw["reset_voltage"] > -1.5))  # before the peak
    assert np.all(sw["g_on"] > 10 * sw["g_off"])
    figures = {f.name: f for f in key_figures(run)}
    reset = figures["RESET voltage (median over cycles)"]
    assert reset.unit == "V" and reset.value == pytest.approx(np.median(sw["reset_voltage"]))
    assert figures["on/off ratio (median over cycles)"].value > 10
    assert [p.name for p in save_run_plots(run, tmp_path)] == ["iv_loops.png"]


def test_forming_key_figures_and_curve(iv_runs, tmp_path):
    run = iv_runs[0]
    figures = {f.name: f for f in key_figures(run)}
    assert figures["formed"].value is True
    assert figures["forming voltage"].unit == "V" and 0 < figures["forming voltage"].value < 4.5
    (path,) = save_run_plots(run, tmp_path, prefix="run1_")
    assert path.name == "run1_forming.png" and path.stat().st_size > 10_000


def test_csv_and_dataframe_of_scalar_streams(iv_runs, tmp_path):
    paths = {p.name for p in write_csv(iv_runs, tmp_path)}
    assert {"key_figures.csv", "run000001_primary.csv", "run000002_primary.csv"} <= paths
    header = (tmp_path / "run000001_primary.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["seq_num", "time"] and "smu_voltage" in header
    pandas = pytest.importorskip("pandas", reason="DataFrames need the pandas extra")
    frame = dataframe(iv_runs[0])
    assert isinstance(frame, pandas.DataFrame) and frame.index.name == "seq_num"
    assert len(frame) == len(iv_runs[0].streams["primary"])
    assert frame["smu_voltage"].is_monotonic_increasing
    table = key_figures_frame(iv_runs)
    assert set(table["plan_name"]) == {"forming", "iv_sweep"}
    with pytest.raises(KeyError, match="no stream 'evaluation'"):
        dataframe(iv_runs[0], "evaluation")


def test_conductance_map_runs_get_a_map_figure(tmp_path):
    RE = run_engine(tmp_path / "m.h5", progress=False)
    board = labcim.connect("sim://pcm-small?cores=2&seed=1")
    try:
        RE(conductance_map(board, reads=2))
    finally:
        board.close()
    (run,) = labcim.open_runs(tmp_path / "m.h5")
    written = [p.name for p in save_run_plots(run, tmp_path)]
    assert written == ["conductance_map_core0.png", "conductance_map_core1.png"]
    groups = {f.group for f in key_figures(run)}
    assert groups == {"core 0", "core 1"}
    # A figure of a core or a step the run does not have says so (it was a StopIteration).
    with pytest.raises(KeyError, match="conductance_map run 1 read no conductance map of core 5"):
        plots.conductance_map(run, 5, "reads")
    with pytest.raises(KeyError, match="conductance_map run 1 programmed no core"):
        plots.programming_error_histogram(run, 0)


@pytest.mark.slow
def test_follow_watches_a_campaign_another_process_writes_until_it_ends(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "id: follow\nchip: sim://pcm-small?seed=2\nout: c.h5\nsteps:\n"
        "  - plan: mvm_characterization\n"
        "    args: {n_vectors: 4000, batch_size: 100, program: false}\n"
        "    over: {read_modes: [4-phase, 1-phase]}\n"
    )
    follower = subprocess.Popen(
        [*LABCIM, "show", "c.h5", "--follow", "--interval", "0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # the follower starts before anything is written
    campaign = subprocess.run(
        [*LABCIM, "-q", "campaign", "c.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert campaign.returncode == 0, campaign.stderr
    out, err = follower.communicate(timeout=60)  # it ends by itself
    assert follower.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "waiting for runs at c.h5"
    progress = [line for line in lines if line.startswith("run 1 mvm_characterization (step 1/2)")]
    assert any("/40 events" in line and not line.endswith("success") for line in progress)
    assert "run 2 mvm_characterization (step 2/2): 40/40 events, success" in lines
    assert any(line.startswith("run 2  mvm_characterization  success") for line in lines)
    assert any("1-phase, 8-bit in / 8-bit out: mvm error" in line for line in lines)


@pytest.mark.slow  # two CLI subprocesses
def test_show_lists_a_runs_interruptions_in_order_with_their_times(tmp_path):
    """A conductance map paused at once mid-run and resumed: ``labcim show`` says when,
    in s after the start, as ``--json`` does in s since the epoch."""
    board = labcim.connect("sim://pcm-small?cores=1&rows=8&cols=8&seed=1")
    RE = run_engine(tmp_path / "out", progress=False)
    interrupt = Interrupt(3, pause_now)
    interrupt.RE = RE
    RE.subscribe(interrupt)
    paused = False
    try:
        RE(conductance_map(board, reads=8))
    except RunEngineInterrupted:
        paused = RE.state == "paused"
        RE.resume()
    finally:
        board.close()
    (run,) = labcim.open_runs(tmp_path / "out")
    assert paused and run.exit_status == "success"
    shown = subprocess.run(
        [*LABCIM, "show", str(tmp_path / "out")], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert re.fullmatch(r"  \+\d+\.\d s  pause", shown[2]), shown
    assert re.fullmatch(r"  \+\d+\.\d s  resume", shown[3]), shown
    as_json = subprocess.run(
        [*LABCIM, "show", "--json", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (record,) = json.loads(as_json)
    assert [i["what"] for i in record["interruptions"]] == ["pause", "resume"]
    times = [i["time"] for i in record["interruptions"]]
    assert run.time < times[0] <= times[1] < run.stop["time"]


def test_a_flapping_link_s_many_interruptions_are_cut_short_under_the_header(tmp_path):
    from labcim.cli.show import SHOWN_INTERRUPTIONS, run_header

    writer, run, stream = one_stream(tmp_path, "interruptions", "interruption", "string")
    said = ["link bad", "resume"] * 8
    for i, what in enumerate(said):
        when = run.start_doc["time"] + i
        writer(
            "event",
            stream.compose_event(
                data={"interruption": what}, timestamps={"interruption": when}, time=when
            ),
        )
    writer("stop", run.compose_stop())
    (saved,) = labcim.open_runs(tmp_path)
    lines = run_header(saved).splitlines()[1:]
    assert lines[:2] == ["  +0.0 s  link bad", "  +1.0 s  resume"]
    assert len(lines) == SHOWN_INTERRUPTIONS + 1
    assert (
        lines[-1]
        == f"  ... {len(said) - SHOWN_INTERRUPTIONS} more interruptions (--json lists all)"
    )


@pytest.mark.slow  # labcim processes
def test_follow_refuses_at_once_a_path_where_no_run_can_appear(tmp_path):
    (tmp_path / "night.yaml").write_text("id: n\n")  # the campaign file given by mistake
    (tmp_path / "notes.h5").write_text("not HDF5\n")
    for name, reason in [
        ("night.yaml", "exists and is not a directory (runs go in it)"),
        ("notes.h5", "exists and is not a labcim index (not an HDF5 file)"),
    ]:
        done = subprocess.run(
            [*LABCIM, "show", name, "--follow"], cwd=tmp_path, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == (
            f"labcim show: {name}: {reason}, so no labcim runs can appear there\n"
        )


def test_the_mvm_figure_of_one_read_mode_has_its_whole_title_in_the_picture(tmp_path):
    """A campaign step of one read mode gives a one-panel figure: its title was cut off
    at both sides ("vm_characterization: core 2 MVM, measured vs id")."""
    RE = run_engine(tmp_path / "m.h5", progress=False)
    board = labcim.connect("sim://pcm-small?cores=1&seed=1")
    try:
        RE(mvm_characterization(board, n_vectors=100, batch_size=100, program=False))
    finally:
        board.close()
    (run,) = labcim.open_runs(tmp_path / "m.h5")
    fig = plots.mvm_scatter(run, 0)
    assert len(fig.axes) == 1 and titles_inside(fig)

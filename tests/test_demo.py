"""``labcim demo`` end to end, as a new user runs it and then works on its file: one HDF5
file, PNG figures named for what they show, printed figures = stored ones = the numbers
the figures state; ``labcim show`` (table, JSON, CSV) and ``labcim calibrate`` on it."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from pty_support import CTRL_C, Terminal
from results_support import titles_inside

import labcim
from labcim import open_runs, plots
from labcim.demo import key_figures
from labcim.twin.model_file import load_model

LABCIM = [sys.executable, "-m", "labcim.cli"]

pytestmark = pytest.mark.slow


def _labcim(*args: str, cwd=None) -> subprocess.CompletedProcess:
    done = subprocess.run([*LABCIM, *args], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo out"  # a space, as in "My Documents"
    done = _labcim("--quiet", "demo", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_demo_writes_file_and_figures_and_prints_what_the_file_holds(demo):
    out, printed = demo
    runs = open_runs(out / "demo.h5")
    assert [r.plan_name for r in runs] == [
        "tdp_program",
        "mvm_characterization",
        "retention",
        "network_inference",
    ]
    assert all(r.exit_status == "success" for r in runs)
    pngs = {p.stem for p in out.glob("*.png")}
    assert pngs == {
        "tdp_program_conductance_map_core0",
        "tdp_program_programming_error_core0",
        "tdp_program_programming_convergence",
        "mvm_characterization_mvm_scatter_core1",
        "mvm_characterization_programming_error_core1",
        "mvm_characterization_programming_convergence",
        "retention_drift_core2",
        "retention_programming_convergence",
        "network_inference_accuracy_vs_time",
        "network_inference_programming_convergence",
    }
    assert all((out / f"{p}.png").stat().st_size > 10_000 for p in pngs)  # real images
    stored = [row for run in runs for row in key_figures(run)]
    for name, value in stored:
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(value)}$", printed, re.M), name
    figures = dict(stored)
    assert float(figures["MVM error 4-phase (%)"]) < float(figures["MVM error 1-phase (%)"])
    month = "digits accuracy at 1 month, {} (%)"
    assert float(figures[month.format("global")]) > float(figures[month.format("none")])
    # The drift exponent is fitted at the HERMES onset: it lies in the published range.
    assert 0.03 < float(figures["drift exponent nu (median, t0 = 200 s)"]) < 0.07


def test_the_figures_state_the_numbers_that_are_printed(demo):
    out, printed = demo
    program, mvm = open_runs(out / "demo.h5")[:2]
    s = program.summary
    # One definition: the histogram's std is the printed programming error.
    err = plots.programming_errors(program, 0)
    assert err.std() == pytest.approx(s["core0_weight_error"], rel=1e-6)
    assert err.size == s["core0_cells"] - s["core0_failed"]
    title = plots.programming_error_histogram(program, 0).axes[0].get_title()
    assert f"std {s['core0_weight_error']:.3f} uS" in title
    assert f"{s['core0_weight_error']:.3f}" in printed
    # The convergence plot marks what the summary calls converged.
    labels = plots.convergence(program).axes[0].get_legend_handles_labels()[1]
    converged = f"converged {100 * s['core0_converged_fraction']:.2f} %"
    assert any(converged in label for label in labels), labels
    assert f"{100 * s['core0_converged_fraction']:.2f}" in printed
    # One MVM panel per read mode, each with its own error: 4-phase is not hidden.
    titles = [ax.get_title() for ax in plots.mvm_scatter(mvm, 1).axes]
    for mode in ("4phase", "1phase"):
        error = mvm.summary[f"core1_{mode}_d8_a8_mvm_error"]
        assert any(f"MVM error {error:.2f} %" in t for t in titles), titles


def test_every_figure_of_every_demo_run_has_its_titles_in_the_picture(demo):
    """The programming-error histogram of the mvm_characterization run ran past its right
    edge (the plan's name is long): every figure the plans make is drawn and checked."""
    out, _ = demo
    drawn = 0
    for run in open_runs(out / "demo.h5"):
        for name, make in plots.PLOTS[run.plan_name].items():
            made = make(run)
            for fig in made.values() if isinstance(made, dict) else [made]:
                assert titles_inside(fig), (run.plan_name, name)
                drawn += 1
    assert drawn >= 10


def test_calibrate_on_the_demo_file_writes_a_model_sim_accepts(demo, tmp_path):
    out, _ = demo
    model = tmp_path / "m.yaml"
    done = _labcim("calibrate", str(out / "demo.h5"), "-o", str(model))
    assert done.returncode == 0, done.stderr
    assert "from 4 of 4 run(s)" in done.stdout
    fitted = load_model(model).model_params
    assert fitted["drift_nu_scale"] == pytest.approx(1.0, rel=0.15)  # the unmodified preset
    assert fitted["prog_noise_scale"] == pytest.approx(1.0, rel=0.15)
    board = labcim.connect(f"sim://pcm-small?cores=1&model={model}")
    board.close()
    again = _labcim("calibrate", str(out / "demo.h5"), "-o", str(model))  # its own: replaced
    assert again.returncode == 0, again.stderr
    notes = tmp_path / "notes.yaml"
    notes.write_text("wafer: W7\n")  # a YAML file of the lab's, at the name given
    refused = _labcim("calibrate", str(out / "demo.h5"), "-o", str(notes))
    assert refused.returncode == 2
    assert refused.stderr == (
        f"labcim calibrate: -o: {notes}: exists and is not a model file labcim wrote; "
        "labcim never overwrites it: give another output path\n"
    )
    assert notes.read_text() == "wafer: W7\n"
    elsewhere = tmp_path / "models" / "m.yaml"  # a folder not made yet
    refused = _labcim("calibrate", str(out / "demo.h5"), "-o", str(elsewhere))
    assert refused.returncode == 2 and refused.stderr == (
        f"labcim calibrate: -o: {elsewhere}: the folder {elsewhere.parent} does not exist\n"
    )


def test_a_figure_of_another_program_in_the_demo_folder_is_refused_before_running(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "retention_drift_core2.png").write_bytes(b"\x89PNG not labcim's")
    done = _labcim("--quiet", "demo", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.startswith(f"labcim demo: --out: {out}/retention_drift_core2.png: exists")
    assert [p.name for p in out.iterdir()] == ["retention_drift_core2.png"]  # nothing ran


def test_the_printed_show_command_runs_as_pasted(demo):
    out, printed = demo
    command = re.search(r"^results: .+ \(see `labcim (.+)`\)$", printed, re.M)[1]
    done = _labcim(*shlex.split(command))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out / 'demo.h5'}: 4 run(s)")


def test_show_prints_a_table_json_and_csv(demo, tmp_path):
    out, _ = demo
    done = _labcim("show", str(out / "demo.h5"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert re.search(r"^run 1  tdp_program  success", text, re.M)
    assert re.search(r"^  core 0$", text, re.M)
    assert re.search(
        r"^    programming error \(std over cells not failed\)\s+0\.\d{4} uS$", text, re.M
    )
    assert re.search(r"^  core 1 programming$", text, re.M)
    assert re.search(r"4-phase, 8-bit in / 8-bit out: mvm error\s+\d+\.\d+ %", text)
    # Accuracy after drift reads down the table in time order (the file keeps keys as
    # text, in which 30 days comes before 1 h).
    times = re.findall(r"^    accuracy at (.+), compensation global\s", text, re.M)
    assert times == ["1 s", "1 h", "1 day", "30 days"]
    done = _labcim("show", str(out / "demo.h5"), "--json", "--csv", str(tmp_path / "csv"))
    records = json.loads(done.stdout)
    assert [r["plan_name"] for r in records] == [r.plan_name for r in open_runs(out / "demo.h5")]
    weight = next(f for f in records[0]["key_figures"] if f["key"] == "core0_weight_error")
    assert weight["unit"] == "uS" and weight["group"] == "core 0"
    with open(tmp_path / "csv" / "key_figures.csv") as file:
        rows = list(csv.DictReader(file))
    row = next(r for r in rows if r["key"] == "core0_weight_error")
    assert float(row["value"]) == pytest.approx(weight["value"])
    with open(tmp_path / "csv" / "run000001_primary.csv") as file:
        primary = list(csv.DictReader(file))
    assert len(primary) == 21 and "board_core0_out_of_tolerance" in primary[0]
    assert np.diff([int(r["seq_num"]) for r in primary]).tolist() == [1] * 20


def test_ctrl_c_in_a_demo_run_again_in_its_folder_asks_and_r_resumes_it(demo, tmp_path):
    """On a terminal, as a person runs it, into the folder of an earlier demo: Ctrl-C
    pauses, "r" resumes, and the table is the new runs' (the same figures: pausing
    changes nothing), shown once, with the earlier demo's runs kept in the file."""
    out, printed = demo
    again = tmp_path / "again"
    shutil.copytree(out, again)
    terminal = Terminal("demo", "--out", "again", cwd=tmp_path)
    try:
        terminal.expect(rb"-- characterize the MVM")
        terminal.expect(rb"mvm_characterization: +0%")  # its run has begun: it programs
        terminal.send(CTRL_C)
        terminal.expect(rb"Paused\. \[r\]esume or \[a\]bort\? ")
        terminal.send(b"r\n")
        assert terminal.wait() == 0, terminal.text
    finally:
        terminal.close()
    table = printed.split("\nresults: ")[0].splitlines()
    shown = terminal.text.splitlines()
    assert all(shown.count(line) == 1 for line in table), terminal.text
    runs = open_runs(again / "demo.h5")
    assert [r.exit_status for r in runs] == ["success"] * 8
    assert [what.split()[0] for _, what in runs[5].interruptions] == ["pause", "resume"]


def test_an_interrupted_demo_without_a_terminal_aborts_and_keeps_the_finished_runs(tmp_path):
    demo = subprocess.Popen(
        [*LABCIM, "demo", "--out", "d"], cwd=tmp_path, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for line in demo.stdout:
            if line.startswith("-- follow drift"):
                time.sleep(0.5)  # into the step: it programs its core for about a second
                demo.send_signal(signal.SIGINT)  # as cron's or CI's kill -INT
                break
        _, err = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 130 and "Traceback" not in err
    statuses = [r.exit_status for r in open_runs(tmp_path / "d" / "demo.h5")]
    assert statuses[:2] == ["success", "success"], statuses
    if statuses[-1] == "abort":  # the pause came at a checkpoint of the step
        why = "aborted by the operator after a pause"
    else:  # after its last checkpoint: the step ended, the demo stopped before the next
        assert statuses == ["success"] * 3, statuses
        why = "interrupted after the step 'follow drift for a month'"
    assert err.splitlines()[-1] == f"labcim demo: {why}; the runs before it are in d"

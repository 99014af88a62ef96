"""Ctrl-C in ``labcim run`` and ``labcim campaign`` on a real terminal (issue 12).

A 512 x 512 matrix programmed over 4 cores of the simulated chip; Ctrl-C typed on the
pty after iteration 2.  ``r`` resumes: exit 0, run ``success`` with every iteration, the
data of an uninterrupted run.  ``a`` aborts: exit 130, run ``abort``.  No traceback
anywhere.  A campaign step aborted that way is the only one ``--resume`` runs again.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from campaign_helpers import labcim
from pause_support import assert_same_data, interruptions
from pty_support import CTRL_C, Terminal

from labcim import open_runs
from labcim.cli import main

pytestmark = pytest.mark.slow

CHIP = "sim://pcm-hermes?cores=4&seed=1"
ITERATION_2 = rb"iteration=2\b"  # the progress bar's postfix after the 3rd event
PROMPT = rb"\[a\]bort\? "


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with the weights file and an uninterrupted run of the same seed."""
    path = tmp_path_factory.mktemp("pause")
    np.save(path / "w.npy", np.random.default_rng(0).uniform(-1, 1, (512, 512)))
    args = ["--quiet", "run", "tdp_program", "--chip", CHIP, "--out", str(path / "plain")]
    assert main([*args, "-p", f"weights={{file: {path / 'w.npy'}}}"]) == 0
    return path, open_runs(path / "plain")[-1]


def run_on_terminal(path, out, answers, interrupts=(CTRL_C,), chip=CHIP, think=0.0):
    """``labcim run tdp_program`` on a pty, interrupted after iteration 2; ``think`` s
    pass at the prompt before each answer."""
    term = Terminal(
        "run", "tdp_program", "--chip", chip, "--out", out, "-p", "weights={file: w.npy}", cwd=path
    )
    try:
        term.expect(ITERATION_2)
        for key in interrupts:
            term.send(key)
        for answer in answers:
            term.expect(PROMPT)
            time.sleep(think)
            term.send(answer + b"\n")
        return term.wait(), term.text
    finally:
        term.close()


def test_ctrl_c_then_r_resumes_and_the_run_has_every_iteration(work):
    path, plain = work
    status, text = run_on_terminal(path, "resumed", [b"r"])
    assert status == 0, text
    assert "Deferred pause acknowledged" in text and "Traceback" not in text
    run = open_runs(path / "resumed")[-1]
    assert run.exit_status == "success"
    assert_same_data(run, plain)
    assert interruptions(run) == ["pause", "resume"] and interruptions(plain) == []
    # and replaying it (no pause) gives its data: the pause is not part of them
    replayed = subprocess.run(
        labcim("--quiet", "replay", str(path / "resumed"), "--out", str(path / "replayed")),
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "vs replayed" in replayed and ": identical" in replayed.splitlines()[1], replayed


def test_a_pause_longer_than_the_servers_idle_timeout_resumes_on_a_new_connection(work):
    """The board server closes the paused run's idle connection; resuming reconnects."""
    path, plain = work
    server = subprocess.Popen(
        [sys.executable, "-m", "labcim.cli", "sim", "serve", "--preset", "pcm-hermes",
         "--cores", "4", "--seed", "1", "--idle-timeout", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip()
        status, text = run_on_terminal(path, "idle", [b"r"], chip=url, think=2.5)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        log = server.stderr.read()
    assert status == 0, text + log
    assert "released the board: idle for more than 1 s" in log
    run = open_runs(path / "idle")[-1]
    assert run.exit_status == "success"
    assert_same_data(run, plain)
    assert interruptions(run) == ["pause", "resume"]


def test_ctrl_c_then_a_aborts_with_exit_130_and_the_run_recorded_abort(work):
    path, plain = work
    status, text = run_on_terminal(path, "aborted", [b"a"])
    assert status == 130, text
    assert "aborted by the operator after a pause" in text
    assert "Traceback" not in text and "FailedPause" not in text
    run = open_runs(path / "aborted")[-1]
    assert run.exit_status == "abort"
    assert interruptions(run) == ["pause"]
    assert 3 <= run.num_events["primary"] < plain.num_events["primary"]


def test_a_second_ctrl_c_pauses_at_once_with_the_same_guarantees(work):
    path, plain = work
    status, text = run_on_terminal(path, "twice", [b"r"], interrupts=(CTRL_C, CTRL_C))
    assert status == 0, text
    assert "Traceback" not in text
    run = open_runs(path / "twice")[-1]
    assert run.exit_status == "success"
    assert_same_data(run, plain)
    assert interruptions(run) == ["pause", "resume"]  # the second Ctrl-C is the same pause


CAMPAIGN = """\
id: night
chip: "{chip}"
out: results
steps:
  - plan: conductance_map
    args: {{cores: [0], reads: 1}}
  - plan: tdp_program
    args: {{weights: {{file: w.npy}}}}
  - plan: conductance_map
    args: {{cores: [1], reads: 1}}
"""


@pytest.mark.parametrize("answer", [b"r", b"a"])
def test_a_campaign_step_pauses_and_resume_redoes_only_an_aborted_step(work, answer, tmp_path):
    path, _ = work
    (tmp_path / "w.npy").write_bytes((path / "w.npy").read_bytes())
    (tmp_path / "night.yaml").write_text(CAMPAIGN.format(chip=CHIP))
    term = Terminal("campaign", "night.yaml", cwd=tmp_path)
    try:
        term.expect(ITERATION_2)
        term.send(CTRL_C)
        term.expect(PROMPT)
        term.send(answer + b"\n")
        status, text = term.wait(), term.text
    finally:
        term.close()
    assert "Traceback" not in text
    runs = {run.start["step_key"]: run for run in open_runs(tmp_path / "results")}
    program = runs["02-tdp_program"]
    if answer == b"r":
        assert status == 0, text
        assert [r.exit_status for r in runs.values()] == ["success"] * 3
        assert program.summary is not None and program.num_events["verify"] == 1
        return
    assert status == 130, text
    assert "stopped: 02-tdp_program aborted" in text
    assert program.exit_status == "abort"
    assert list(runs) == ["01-conductance_map", "02-tdp_program"]
    again = subprocess.run(
        labcim("--quiet", "campaign", "--resume", "night.yaml"),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "1 of 3 steps done" in again.stdout
    statuses: dict[str, list[str]] = {}
    for run in open_runs(tmp_path / "results"):
        statuses.setdefault(run.start["step_key"], []).append(run.exit_status)
    assert statuses == {
        "01-conductance_map": ["success"],
        "02-tdp_program": ["abort", "success"],
        "03-conductance_map": ["success"],
    }


#: Batches of 8: many device operations, each a point where a Ctrl-C can pause.  Three
#: programming iterations (default 20): what is checked happens in the inference batches
#: that follow, and a run and its uninterrupted twin program alike however many there are.
INFERENCE = ["run", "network_inference", "--chip", CHIP, "-p", "model=digits-mlp",
             "-p", "batch_size=8", "-p", "times=[0, 86400]",
             "-p", "max_iterations=3"]  # fmt: skip


@pytest.fixture(scope="module")
def inference_plain(tmp_path_factory):
    """An uninterrupted inference run of the same seed."""
    path = tmp_path_factory.mktemp("inference")
    assert main(["--quiet", *INFERENCE, "--out", str(path / "plain")]) == 0
    return path, open_runs(path / "plain")[-1]


def interrupt_a_busy_thread(pid: int) -> None:
    """SIGINT to one thread of ``pid`` other than its main thread, as the kernel may
    deliver a terminal's Ctrl-C to any thread of the process (glibc's ``tgkill``)."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    busy = max(tids, key=lambda t: int(Path(f"/proc/{pid}/task/{t}/stat").read_text().split()[13]))
    assert ctypes.CDLL(None, use_errno=True).tgkill(pid, busy, signal.SIGINT) == 0


@pytest.mark.parametrize("where", ["terminal", "busy thread"])
def test_ctrl_c_in_inference_pauses_at_the_next_batch_and_r_resumes_it(inference_plain, where):
    # The batches run in the board's worker thread.  Python runs signal handlers in the
    # main thread only; a SIGINT that lands on another thread must still pause the plan
    # at the next batch (engine.PromptSignals), not at the end of the run: without it
    # about 2 Ctrl-C in 5 on the terminal went unanswered, and every one sent to a
    # busy thread.
    path, plain = inference_plain
    out = where.replace(" ", "_")
    term = Terminal(*INFERENCE, "--out", out, cwd=path)
    try:
        term.expect(rb"time=0, batch=[1-9]")
        if where == "terminal":
            term.send(CTRL_C)
        else:
            interrupt_a_busy_thread(term.process.pid)
        term.expect(PROMPT, timeout=20)
        term.send(b"r\n")
        status, text = term.wait(), term.text
    finally:
        term.close()
    assert status == 0, text
    assert "Deferred pause acknowledged" in text and "Traceback" not in text
    run = open_runs(path / out)[-1]
    assert run.exit_status == "success"
    assert_same_data(run, plain)

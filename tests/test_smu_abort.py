"""A second Ctrl-C stops an SMU sweep in the middle, on every simulated model.

``labcim run iv_sweep`` on a real pty against the simulated instruments, each branch a
list sweep of 21 points 0.4 s apart (8.4 s).  Ctrl-C twice while the first sweep runs:
the pause prompt comes within a few seconds, not at the sweep's end, the instrument was
told to abort (``:ABOR`` on the SCPI models; the B1500A's host-paced list stops between
points), no later point reached the device, and the output ends at 0 V and off.  ``a``
then aborts the run (exit 130, run ``abort``); ``r`` resumes it: the interrupted sweep
runs again and the run ends ``success`` with both branches.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pty_support import CTRL_C, Terminal

from labcim import open_runs
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer

pytestmark = pytest.mark.slow

PROMPT = rb"\[a\]bort\? "
POINTS, DELAY = 11, 0.4  # 21 values per branch: 8.4 s
#: What starts a sweep point, and what switches the output off, per model.
STARTS = {"2450": ":INIT", "b2900": ":INIT (@1)", "b1500a": "DV 1,0,"}
OFF = {"2450": ":OUTP OFF", "b2900": ":OUTP OFF", "b1500a": "CL 1"}


def interrupted_sweep(model: str, tmp_path, answer: bytes, delay: float = DELAY):
    """Run iv_sweep on a pty, Ctrl-C twice once the first sweep runs, then ``answer``;
    returns (exit status, output, seconds from Ctrl-C to the prompt, lines received)."""
    started = threading.Event()
    count = {"n": 0}

    def on_line(line: str) -> None:
        if line.startswith(STARTS[model]):
            count["n"] += 1
            # the SCPI models start the whole sweep; the B1500A forces point by point
            if model != "b1500a" or count["n"] == 3:
                started.set()

    with SMUServer(ProbedRRAM(np.random.default_rng(7)), model=model, on_line=on_line) as smu:
        term = Terminal(
            "run", "iv_sweep", "--chip", smu.resource, "--smu-model", model,
            "--out", str(tmp_path / "out"), "-p", "v_set=1.5", "-p", "v_reset=-1.5",
            "-p", f"points={POINTS}", "-p", f"delay={delay}", cwd=tmp_path,
        )  # fmt: skip
        try:
            assert started.wait(60), "the first sweep never started"
            time.sleep(0.5)  # well inside the 8.4 s sweep
            term.send(CTRL_C)
            time.sleep(0.2)
            term.send(CTRL_C)
            pressed = time.monotonic()
            term.expect(PROMPT, timeout=30)
            waited = time.monotonic() - pressed
            term.send(answer + b"\n")
            status = term.wait(timeout=120)
            return status, term.text, waited, smu.received
        finally:
            term.close()


@pytest.mark.parametrize("model", ["2450", "b2900", "b1500a"])
def test_a_second_ctrl_c_aborts_the_running_sweep_and_leaves_the_output_off(model, tmp_path):
    status, text, waited, lines = interrupted_sweep(model, tmp_path, b"a")
    assert status == 130, text
    assert "Traceback" not in text
    assert waited < 4.0, f"the prompt came {waited:.1f} s after Ctrl-C: the sweep ran on"
    if model == "b1500a":
        forced = [line for line in lines if line.startswith("DV 1,0,")]
        assert len(forced) < 2 * POINTS - 1 + 2  # the branch's points were not all forced
    else:
        assert (":ABOR (@1)" if model == "b2900" else ":ABOR") in lines
    assert OFF[model] in lines[-6:], lines[-10:]
    (run,) = open_runs(tmp_path / "out")
    assert run.exit_status == "abort"


def test_resuming_runs_the_interrupted_sweep_again(tmp_path):
    # 0.3 s a point (6.3 s a branch): both branches run after the resume
    status, text, waited, _ = interrupted_sweep("2450", tmp_path, b"r", delay=0.3)
    assert status == 0, text
    assert waited < 4.0  # of the 5.8 s the sweep had left
    (run,) = open_runs(tmp_path / "out")
    assert run.exit_status == "success"
    primary = run.streams["primary"]
    assert len(primary) == 2  # the SET and the RESET branch, each once
    assert np.shape(primary["smu_sweep_current"]) == (2, 2 * POINTS - 1)

"""A campaign process SIGKILLed mid-step is completed by ``--resume``, redoing only that step."""

import random
import signal
import subprocess
import time

import pytest
from campaign_helpers import labcim, plugin_fixture  # noqa: F401  (the fixture "plugin")

from labcim.hdf5 import open_runs

STEPS = 6
EVENTS = 8


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def runs_of(out):
    try:
        return list(open_runs(out))
    except FileNotFoundError:
        return []


@pytest.mark.slow
def test_sigkill_mid_campaign_then_resume_completes_it(tmp_path, plugin):
    rng = random.Random(20260509)
    path = tmp_path / "night.yaml"
    path.write_text(
        "id: overnight\nchip: none\nout: results\n"
        "steps:\n"
        f"  - plan: slow_count\n    args: {{n: {EVENTS}, delay: 0.05}}\n"
        f"    over: {{cores: {list(range(STEPS))}}}\n"
    )
    out = tmp_path / "results"
    finished_before_kill = rng.randint(1, STEPS - 2)
    child = subprocess.Popen(
        labcim("--quiet", "campaign", str(path)),
        env=plugin,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill while the step after ``finished_before_kill`` successful ones is running.
        wait_for(lambda: len(runs_of(out)) > finished_before_kill)
        time.sleep(rng.uniform(0.05, 0.25))  # a step lasts about 0.4 s
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
    finally:
        child.kill()
        child.wait()
    before = {run.uid: (run.start["step_key"], run.exit_status) for run in runs_of(out)}
    interrupted = [key for key, status in before.values() if status != "success"]
    assert len(interrupted) == 1
    assert list(before.values())[-1] == (interrupted[0], "incomplete")
    finished = {key for key, status in before.values() if status == "success"}

    done = subprocess.run(
        labcim("--quiet", "campaign", "--resume", str(path)),
        env=plugin,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(finished)} of {STEPS} steps done" in done.stdout

    after = runs_of(out)
    successes = {}
    for run in after:
        if run.exit_status == "success":
            assert run.start["step_key"] not in successes, "a step ran twice"
            successes[run.start["step_key"]] = run
            assert len(run.streams["primary"]) == EVENTS
    assert len(successes) == STEPS  # every step, exactly one successful run
    for uid, (key, status) in before.items():  # finished steps were not re-run
        if status == "success":
            assert successes[key].uid == uid
    redone = successes[interrupted[0]]
    assert redone.uid not in before and redone.time > killed_at
    new = [run for run in after if run.uid not in before]
    assert all(run.exit_status == "success" for run in new)
    assert sorted(run.start["step_key"] for run in new) == sorted(set(successes) - finished)

"""Running campaigns in-process: metadata, resume, failure policies, pause, the connect seam."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from campaign_helpers import plugin_fixture  # noqa: F401  (the fixture "plugin")

from labcim.campaign import CampaignError, load_campaign, run_campaign
from labcim.cli import main
from labcim.hdf5 import open_runs


def campaign_file(tmp_path, steps, on_failure="stop", extra=""):
    path = tmp_path / "campaign.yaml"
    path.write_text(
        f"id: test\nchip: none\nout: results\non_failure: {on_failure}\n"
        f"metadata: {{operator: ada, wafer: W7}}\n{extra}steps:\n{steps}"
    )
    return path


def by_key(tmp_path):
    runs = {}
    for run in open_runs(tmp_path / "results"):
        runs.setdefault(run.start["step_key"], []).append(run)
    return runs


TWO_CORES = "  - plan: slow_count\n    args: {n: 2, delay: 0}\n    over: {cores: [0, 1]}\n"


def test_every_step_is_a_run_with_campaign_metadata(tmp_path, plugin):
    campaign = load_campaign(campaign_file(tmp_path, TWO_CORES))
    result = run_campaign(campaign, progress=False)
    assert result.complete and not result.stopped
    runs = open_runs(tmp_path / "results")
    assert [r.start["step_key"] for r in runs] == [s.key for s in campaign.steps]
    for run, step in zip(runs, campaign.steps, strict=True):
        assert run.exit_status == "success" and run.plan_name == "slow_count"
        assert run.metadata["campaign_id"] == "test" and run.metadata["operator"] == "ada"
        assert run.metadata["step_index"] == step.index and run.plan_args["cores"] == [
            step.index - 1
        ]
        assert run.metadata["campaign_file"] == str(campaign.path)


def test_a_second_run_needs_resume_and_resume_skips_finished_steps(tmp_path, plugin):
    campaign = load_campaign(campaign_file(tmp_path, TWO_CORES))
    run_campaign(campaign, progress=False)
    with pytest.raises(CampaignError, match=r"already holds 2 run\(s\) of campaign 'test'"):
        run_campaign(campaign, progress=False)
    result = run_campaign(campaign, resume=True, progress=False)
    assert [o.status for o in result.outcomes] == ["done", "done"] and result.complete
    assert len(open_runs(tmp_path / "results")) == 2


def test_resume_redoes_a_step_whose_arguments_changed(tmp_path, plugin):
    run_campaign(load_campaign(campaign_file(tmp_path, TWO_CORES)), progress=False)
    edited = campaign_file(tmp_path, TWO_CORES.replace("n: 2", "n: 3"))
    result = run_campaign(load_campaign(edited), resume=True, progress=False)
    assert [o.status for o in result.outcomes] == ["success", "success"]


FAIL_THEN_COUNT = "  - plan: failing\n  - plan: slow_count\n    args: {n: 1, delay: 0}\n"


def test_failure_policy_stop(tmp_path, plugin):
    result = run_campaign(load_campaign(campaign_file(tmp_path, FAIL_THEN_COUNT)), progress=False)
    assert [o.status for o in result.outcomes] == ["fail"]
    assert "RuntimeError: deliberate failure" in result.outcomes[0].error
    assert result.stopped == "01-failing failed and on_failure is 'stop'"
    assert [r.exit_status for r in open_runs(tmp_path / "results")] == ["fail"]


def test_failure_policy_continue_and_resume_redoes_only_the_failed_step(tmp_path, plugin):
    campaign = load_campaign(campaign_file(tmp_path, FAIL_THEN_COUNT, "continue"))
    result = run_campaign(campaign, progress=False)
    assert [o.status for o in result.outcomes] == ["fail", "success"]
    assert not result.stopped and not result.complete
    again = run_campaign(campaign, resume=True, progress=False)
    assert sorted(o.status for o in again.outcomes) == ["done", "fail"]
    assert [len(v) for v in by_key(tmp_path).values()] == [2, 1]


@pytest.mark.parametrize("plan", ["board_fault", "no_run"])
def test_hardware_fault_stops_whatever_the_policy_and_a_step_must_be_a_run(tmp_path, plugin, plan):
    steps = f"  - plan: {plan}\n  - plan: slow_count\n"
    result = run_campaign(load_campaign(campaign_file(tmp_path, steps, "continue")), progress=False)
    assert result.outcomes[0].status == "fail"
    if plan == "board_fault":
        assert result.stopped.startswith("hardware fault in 01-board_fault: LinkError: link lost")
        assert len(result.outcomes) == 1
    else:
        assert "opened no bluesky run" in result.outcomes[0].error
        assert [o.status for o in result.outcomes] == ["fail", "success"]


def test_the_board_comes_from_the_injected_connect(tmp_path, plugin):
    steps = "  - plan: program\n    args: {weights: [[1.0, 2.0]]}\n"
    path = campaign_file(tmp_path, steps, extra="chip_options: {timeout: 2}\n")
    calls = []

    class Board:
        def close(self):
            calls.append("closed")

        def __repr__(self):
            return "BOARD"

    def connect(url, **options):
        calls.append((url, options))
        return Board()

    run_campaign(load_campaign(path), connect=connect, progress=False)
    assert calls == [("none", {"timeout": 2}), "closed"]
    run = open_runs(tmp_path / "results")[0]
    assert run.metadata["board"] == "BOARD"
    assert run.plan_args["weights"].tolist() == [[1.0, 2.0]]
    calls.clear()
    run_campaign(load_campaign(path), resume=True, connect=connect, progress=False)
    assert calls == []  # nothing left to do: no connection


SLOW = "  - plan: slow_count\n    args: {n: 20, delay: 0.05}\n"


def interrupt_soon(delay=0.3):
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_ctrl_c_pauses_and_the_operator_resumes(tmp_path, plugin):
    asked = []
    interrupt_soon()
    result = run_campaign(
        load_campaign(campaign_file(tmp_path, SLOW)),
        progress=False,
        on_pause=lambda: asked.append(1) or True,
    )
    assert asked == [1] and result.complete
    run = open_runs(tmp_path / "results")[0]
    assert run.exit_status == "success" and len(run.streams["primary"]) == 20


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_ctrl_c_without_a_terminal_aborts_then_resume_redoes_the_step(tmp_path, plugin, capsys):
    path = campaign_file(tmp_path, SLOW + "  - plan: slow_count\n")
    interrupt_soon()
    assert main(["--quiet", "campaign", str(path)]) == 130
    assert "stopped: 01-slow_count aborted" in capsys.readouterr().err
    assert [r.exit_status for r in open_runs(tmp_path / "results")] == ["abort"]
    assert main(["--quiet", "campaign", "--resume", str(path)]) == 0
    statuses = {k: [r.exit_status for r in v] for k, v in by_key(tmp_path).items()}
    assert statuses == {"01-slow_count": ["abort", "success"], "02-slow_count": ["success"]}


@pytest.mark.slow  # a labcim process
def test_a_home_folder_path_in_the_file_is_the_home_folder(tmp_path):
    """No shell expands ``~`` in a YAML file: labcim does, for ``out`` and array files
    (it made a folder named ``~`` beside the campaign file)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    np.save(home / "w.npy", np.eye(8))
    (work / "c.yaml").write_text(
        "id: home\nchip: sim://pcm-small?cores=1&seed=1\nout: ~/results/home.h5\nsteps:\n"
        "  - plan: tdp_program\n    args: {weights: {file: ~/w.npy}, max_iterations: 2}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "labcim.cli", "-q", "campaign", "c.yaml"],
        cwd=work, env={**os.environ, "HOME": str(home)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"results in {home}/results/home.h5" in done.stdout
    (run,) = open_runs(home / "results" / "home.h5")
    assert run.exit_status == "success" and run.plan_args["weights"].shape == (8, 8)
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml"]


@pytest.mark.slow  # a labcim process, interrupted, then resumed
def test_ctrl_c_at_the_very_end_of_a_step_stops_before_the_next(tmp_path, plugin):
    """bluesky finishes a plan whose last checkpoint has passed and keeps the pause
    request: the campaign asks (no terminal: stops) before the next step."""
    (tmp_path / "c.yaml").write_text(
        "id: late\nchip: none\nout: r.h5\nsteps:\n"
        "  - plan: slow_end\n    over: {tail: [2.0, 0.1]}\n"
    )
    command = [sys.executable, "-m", "labcim.cli", "-q", "campaign", "c.yaml"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=plugin, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "r.h5.runs").glob("run_000001_*.h5")):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        time.sleep(0.5)  # its reading is taken: the step is in its last 2 s, past its checkpoint
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "stopped: interrupted after 01-slow_end[tail=2.0]; continue with --resume" in err
    assert [r.exit_status for r in open_runs(tmp_path / "r.h5")] == ["success"]
    done = subprocess.run(
        [*command, "--resume"], cwd=tmp_path, env=plugin, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r.plan_args["tail"] for r in open_runs(tmp_path / "r.h5")] == [2.0, 0.1]

"""A campaign runs once at a time: a second invocation while the first runs (a cron job
beside a terminal, a ``--resume`` typed meanwhile) is refused, naming the first, and runs no step
twice; a killed invocation leaves nothing that holds the next one back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from campaign_helpers import labcim, plugin_fixture  # noqa: F401  (the fixture "plugin")

from labcim.campaign import CampaignError, load_campaign
from labcim.campaign.dispatch import dispatch_campaign
from labcim.campaign.lock import lock_path, running_alone
from labcim.campaign.runner import run_campaign
from labcim.hdf5 import open_runs

STEPS = 4


def write_campaign(tmp_path, delay=0.1):
    path = tmp_path / "night.yaml"
    path.write_text(
        "id: overnight\nchip: none\nout: results\nsteps:\n"
        f"  - plan: slow_count\n    args: {{n: 8, delay: {delay}}}\n"
        f"    over: {{cores: {list(range(STEPS))}}}\n"
    )
    return path


def started(tmp_path, plugin, *args):
    return subprocess.Popen(
        labcim("--quiet", "campaign", str(tmp_path / "night.yaml"), *args),
        env=plugin,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_a_run(out, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not (out.is_dir() and any(out.glob("run_*.h5"))):
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_second_invocation_while_the_first_runs_is_refused(tmp_path, plugin):
    write_campaign(tmp_path, delay=0.25)  # 8 s: longer than the second takes to start
    first = started(tmp_path, plugin)
    try:
        wait_for_a_run(tmp_path / "results")
        second = subprocess.run(
            labcim("--quiet", "campaign", str(tmp_path / "night.yaml"), "--resume"),
            env=plugin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert first.poll() is None, "the first ended before the second was tried"
        assert first.wait(120) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr
    said = second.stderr.splitlines()
    assert said[0].endswith("night.yaml: 1 error(s), nothing was run:")
    assert said[1].startswith(f"  campaign 'overnight' is already running (pid {first.pid} on ")
    assert said[1].endswith("wait for it to end or stop it, then --resume")
    runs = open_runs(tmp_path / "results")
    assert sorted(run.start["step_key"] for run in runs) == [  # each step once
        f"01-slow_count[cores={core}]" for core in range(STEPS)
    ]
    assert all(run.exit_status == "success" for run in runs)


@pytest.mark.slow
def test_a_killed_invocation_holds_nothing_back(tmp_path, plugin):
    write_campaign(tmp_path)
    first = started(tmp_path, plugin)
    try:
        wait_for_a_run(tmp_path / "results")
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    held = json.loads(lock_path(load_campaign(tmp_path / "night.yaml")).read_text())
    assert held["pid"] == first.pid  # the file stays; the kernel released the lock
    again = started(tmp_path, plugin, "--resume")
    assert again.wait(120) == 0, again.stderr.read()
    runs = [run for run in open_runs(tmp_path / "results") if run.exit_status == "success"]
    assert len(runs) == STEPS


@pytest.mark.slow  # a CLI subprocess
def test_a_foreign_file_at_the_lock_path_is_left_alone(tmp_path, plugin):
    campaign = load_campaign(write_campaign(tmp_path, delay=0))
    foreign = lock_path(campaign)
    foreign.write_text("someone's notes\n")
    done = subprocess.run(
        labcim("--quiet", "campaign", str(tmp_path / "night.yaml")),
        env=plugin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{foreign} is not this campaign's lock file; labcim leaves it alone" in done.stderr
    assert foreign.read_text() == "someone's notes\n"
    assert not (tmp_path / "results").exists()


def test_a_campaign_dispatched_to_stations_is_held_the_same_way(tmp_path, plugin):
    campaign = load_campaign(write_campaign(tmp_path, delay=0))
    refusal = pytest.raises(CampaignError, match="'overnight' is already running")
    with running_alone(campaign), refusal as refused:  # held as by another invocation
        dispatch_campaign(campaign, [])
    assert f"(pid {os.getpid()} on " in str(refused.value)


def test_an_out_beside_which_nothing_can_be_written_is_refused_naming_it(tmp_path, plugin):
    (tmp_path / "notes").write_text("a file, not a directory\n")
    path = tmp_path / "night.yaml"
    path.write_text("chip: none\nout: notes/results\nsteps: [{plan: slow_count}]\n")
    campaign = load_campaign(path)
    with pytest.raises(CampaignError) as refused:
        run_campaign(campaign)
    (error,) = refused.value.errors
    assert error.startswith(f"out: cannot write beside {campaign.out}: not a directory: ")
    assert (tmp_path / "notes").read_text() == "a file, not a directory\n"

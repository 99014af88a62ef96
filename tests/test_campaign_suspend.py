"""A campaign's ``suspend:`` section and ``labcim run --suspend``, from outside: the CLI
in a subprocess, its board over real TCP through a proxy that starts losing half the
bytes mid-step.

The step is suspended while the link is bad, probed until it is clean, and resumed: the
run ends ``success`` with the reads of a clean run, bit for bit.  A link that stays bad
past ``give_up`` ends the step as a hardware fault, and the campaign stops.
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from campaign_helpers import labcim
from link_support import CorruptingProxy
from pause_support import interruptions
from pty_support import CTRL_C, Terminal

from labcim import HDF5Writer, connect, open_runs
from labcim.campaign import CampaignError, load_campaign
from labcim.suspenders import LinkSuspender
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip
from plans import conductance_map

CHIP = {"name": "pcm-small", "cores": 1, "rows": 8, "cols": 8, "seed": 4}
READS = 1500
MAP = "board_core0_conductance_map"
CLOCK = "board_fpga_clock"


TIMEOUT, RETRIES = 0.05, 40
"""The driver's options in these tests: a frame fails after 41 attempts, 2.05 s."""


def campaign(tmp_path, url, suspend):
    """``labcim campaign`` of one conductance_map step on ``url``, suspended on ``suspend``."""
    path = tmp_path / "night.yaml"
    path.write_text(
        f"chip: {url}\n"
        f"chip_options: {{timeout: {TIMEOUT}, retries: {RETRIES}}}\n"
        "out: results\n"
        f"suspend:\n  retry_fraction: {suspend}\n"
        f"steps:\n  - plan: conductance_map\n    args: {{cores: [0], reads: {READS}}}\n"
    )
    return Command("campaign", str(path))


def one_run(tmp_path, url, suspend):
    """``labcim run`` of the same plan, with ``--suspend``."""
    out = str(tmp_path / "results")
    chip = f"{url}?timeout={TIMEOUT}&retries={RETRIES}"
    arguments = ["-p", "cores=[0]", "-p", f"reads={READS}"]
    suspended = f"{{retry_fraction: {suspend}}}"
    return Command("run", "conductance_map", "--chip", chip, "--out", out, *arguments,
                   "--suspend", suspended)  # fmt: skip


class Command:
    """``labcim --quiet ARGS`` running, its output collected line by line."""

    def __init__(self, *args):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # bluesky's prints as they come
        self.child = subprocess.Popen(
            labcim("--quiet", *args),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        for line in self.child.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for(self, condition, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.child.poll() is None, f"ended before {what}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n{self.output}"
            time.sleep(0.01)

    def end(self, timeout=120.0):
        try:
            self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {timeout} s:\n{self.output}")
        time.sleep(0.1)  # the last lines
        return self.child.returncode


@pytest.fixture
def link():
    """A fresh chip served over TCP, reached through a proxy that is clean for now."""
    chip = Chip.from_preset(**CHIP)
    with TcpBoardServer(BoardHandler(chip)) as server:
        server.start()
        proxy = CorruptingProxy(server.url, seed=3, flip=0.0, drop=0.0)
        yield proxy
        proxy.close()


@functools.cache
def clean_reads(out):
    """The maps and board clocks of the same step on the same chip, run here (writing to
    ``out``) over a clean link; once per test process."""
    board = connect(f"sim://pcm-small?cores=1&rows=8&cols=8&seed={CHIP['seed']}")
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(out))
    RE(conductance_map(board, cores=[0], reads=READS))
    board.close()
    (clean,) = open_runs(out)
    return {key: np.asarray(clean.streams["primary"][key]) for key in (MAP, CLOCK)}


def assert_as_clean(run, tmp_path_factory):
    """``run``'s maps and board clocks are those of a clean run: bit for bit, no read
    lost or made twice, each stamped with the clock of its first pass."""
    want = clean_reads(tmp_path_factory.getbasetemp() / "clean")
    for key in (MAP, CLOCK):
        got = np.asarray(run.streams["primary"][key])
        np.testing.assert_array_equal(got, want[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("start", [campaign, one_run])
def test_a_step_is_suspended_while_the_link_is_bad_and_resumed_with_nothing_lost(
    start, link, tmp_path, tmp_path_factory
):
    suspend = "{above: 0.2, resume_below: 0.05, probe: 0.05, sleep: 0.2}"
    command = start(tmp_path, link.url, suspend)
    try:
        command.wait_for(lambda: link.chunks > 400, "reads")  # the step is well under way
        link.drop = 0.5
        command.wait_for(lambda: "Suspending" in command.output, "suspension")
        dropped = link.dropped
        link.drop = 0.0  # the link heals while the step is suspended
        assert command.end() == 0, command.output
    finally:
        command.child.kill()
    assert dropped > 5  # the link really was that bad
    assert "board_fpga_retry_fraction" in command.output  # bluesky's justification
    (run,) = open_runs(tmp_path / "results")
    assert run.exit_status == "success"
    reasons = interruptions(run)  # the run says when it was suspended, and why
    assert reasons and all(r.startswith("Signal board_fpga_retry_fraction = ") for r in reasons)
    assert_as_clean(run, tmp_path_factory)


@pytest.mark.slow
def test_a_link_bad_past_give_up_stops_the_campaign_as_a_hardware_fault(link, tmp_path):
    suspend = "{above: 0.2, probe: 0.05, give_up: 1.0}"
    command = campaign(tmp_path, link.url, suspend)
    try:
        command.wait_for(lambda: link.chunks > 400, "reads")
        link.drop = 0.5  # and it stays bad
        assert command.end() == 1, command.output
    finally:
        command.child.kill()
    assert "Suspending" in command.output
    assert "hardware fault in 01-conductance_map: LinkDegradedError:" in command.output
    assert "still above 0.2 after 1 s suspended" in command.output
    (run,) = open_runs(tmp_path / "results")
    assert run.exit_status == "fail"
    assert 0 < run.num_events["primary"] < READS
    assert [r.split(" = ")[0] for r in interruptions(run)] == ["Signal board_fpga_retry_fraction"]


def pull_the_cable(command, link, seconds):
    """Once the step is well under way, let no byte through either way for ``seconds``."""
    command.wait_for(lambda: link.chunks > 400, "reads")
    link.drop = 1.0
    time.sleep(seconds)
    link.drop = 0.0
    return link.dropped


@pytest.mark.slow
def test_a_cable_pulled_for_less_than_the_retries_last_is_ridden_out(
    link, tmp_path, tmp_path_factory
):
    """1 s of total loss within the 2.05 s the driver's retries last: the waiting command
    gets through once the cable is back, and the suspender, seeing its retries, holds
    the step until probes find the link clean."""
    suspend = "{above: 0.2, resume_below: 0.05, probe: 0.05, sleep: 0.2}"
    command = campaign(tmp_path, link.url, suspend)
    try:
        dropped = pull_the_cable(command, link, 1.0)
        assert command.end() == 0, command.output
    finally:
        command.child.kill()
    assert dropped > 0
    (run,) = open_runs(tmp_path / "results")
    assert run.exit_status == "success"
    reasons = interruptions(run)  # one suspension; more if a loaded machine is slow to answer
    assert reasons and all(r.startswith("Signal board_fpga_retry_fraction = ") for r in reasons)
    assert_as_clean(run, tmp_path_factory)


@pytest.mark.slow
def test_a_cable_pulled_for_longer_than_the_retries_last_is_a_hardware_fault(link, tmp_path):
    """3 s of total loss against 2.05 s of retries: no suspender can help a command that
    already failed; the campaign stops with the reads made so far on disk."""
    command = campaign(tmp_path, link.url, "{above: 0.2, probe: 0.05}")
    try:
        pull_the_cable(command, link, 3.0)
        assert command.end() == 1, command.output
    finally:
        command.child.kill()
    assert "hardware fault in 01-conductance_map: BoardTimeoutError:" in command.output
    assert f"failed after {RETRIES + 1} attempts: no reply within {TIMEOUT:g} s" in command.output
    (run,) = open_runs(tmp_path / "results")
    assert run.exit_status == "fail"
    assert 0 < run.num_events["primary"] < READS


PROMPT = rb"\[a\]bort\? "


@pytest.mark.slow
@pytest.mark.parametrize(
    ("presses", "answer", "status", "said", "think"),
    [
        (2, b"r", 0, ["pause", "resume"], 0.0),
        (2, b"a", 130, ["pause"], 0.0),
        (1, b"r", 0, ["pause", "resume"], 0.0),
        (2, b"r", 0, ["pause", "resume"], 7.0),
    ],
    ids=["twice-resume", "twice-abort", "once-resume", "resume-after-give_up-s-paused"],
)
def test_ctrl_c_while_suspended(
    presses, answer, status, said, think, link, tmp_path, tmp_path_factory
):
    """On a terminal, while a step waits out a bad link: Ctrl-C twice asks at once; a
    resumed run is still suspended until the link is clean, with nothing lost.  One
    Ctrl-C pauses at the next checkpoint, which comes once the link is clean (bluesky's
    deferred pause).  Time spent at the prompt (``think`` s, longer than ``give_up``)
    is not suspension: resumed, the step still waits for the link."""
    options = "above: 0.2, resume_below: 0.05, probe: 0.05, sleep: 0.2, give_up: 6"
    term = Terminal(
        "run", "conductance_map", "--chip", f"{link.url}?timeout={TIMEOUT}&retries={RETRIES}",
        "--out", "results", "-p", "cores=[0]", "-p", f"reads={READS}",
        "--suspend", f"{{retry_fraction: {{{options}}}}}",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while link.chunks < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        link.drop = 0.5
        term.expect(rb"Suspending")
        for _ in range(presses):
            term.send(CTRL_C)
            time.sleep(0.3)
        if presses == 1:  # no prompt while the link is bad
            with pytest.raises(AssertionError, match="no b"):
                term.expect(PROMPT, timeout=2.0)
            link.drop = 0.0
        term.expect(PROMPT)
        time.sleep(think)
        term.send(answer + b"\n")
        resumed = healed = time.time()
        if answer == b"r" and presses == 2:  # resumed on a bad link: still suspended
            time.sleep(1.5)
            healed = time.time()
            link.drop = 0.0
            term.expect(rb"return to nominal conditions")
        assert term.wait() == status, term.text
    finally:
        term.close()
    assert "Traceback" not in term.text
    (run,) = open_runs(tmp_path / "results")
    reasons = interruptions(run)
    assert reasons[1 : 1 + len(said)] == said, reasons
    suspensions = [reasons[0], *reasons[1 + len(said) :]]  # more if the machine is slow
    assert all(r.startswith("Signal board_fpga_retry_fraction = ") for r in suspensions)
    if answer == b"a":
        assert run.exit_status == "abort" and 0 < run.num_events["primary"] < READS
    else:
        assert run.exit_status == "success"
        assert_as_clean(run, tmp_path_factory)
        times = run.streams["primary"].time
        assert not np.any((times > resumed + 0.2) & (times < healed)), "read on a bad link"


BOARD = "chip: sim://pcm-small\n"
ON = "suspend: {retry_fraction: {above: 0.2}}\n"


@pytest.mark.parametrize(
    ("head", "error"),
    [
        *[
            (f"{BOARD}suspend: {section}\n", error)
            for section, error in [
                (
                    "{retry_fraction: {above: 0}}",
                    "suspend.retry_fraction.above = 0 must be a fraction in (0, 1)",
                ),
                (
                    "{mean_rtt: {above: 0}}",
                    "suspend.mean_rtt.above = 0 must be a finite number > 0",
                ),
                (
                    "{retry_fraction: {above: 0.2, resume_below: 0.3}}",
                    "suspend.retry_fraction.resume_below = 0.3 is outside [0.0, 0.2]",
                ),
                ("{retry_fraction: {resume_below: 0.1}}", "suspend.retry_fraction.above: missing"),
                ("{mean_rtt: {above: 0.01, every: 2}}", "suspend.mean_rtt.every: unknown option"),
                (
                    "{temperature: {above: 310}}",
                    "suspend.temperature: unknown signal; allowed: retry_fraction",
                ),
                (
                    "{retry_fraction: 0.2}",
                    "suspend.retry_fraction: expected a mapping such as {above: 0.2}",
                ),
                (
                    "{mean_rtt: {above: 0.01, sleep: -1}}",
                    "suspend.mean_rtt.sleep = -1 s must be finite and >= 0",
                ),
                ("[retry_fraction]", "suspend: expected a mapping of signal: {above: ...}"),
            ]
        ],
        ("chip: none\n" + ON, "suspend: watches a board's link; chip 'none' is not a board"),
        (
            "chip: TCPIP::127.0.0.1::5025::SOCKET\n" + ON,
            "suspend: watches a board's link; chip 'TCPIP::127.0.0.1::5025::SOCKET'",
        ),
        (BOARD + "stations: [st1]\n" + ON, "suspend: applies to campaigns run here"),
    ],
)
def test_a_suspend_section_it_cannot_keep_is_refused_naming_the_field(head, error, tmp_path):
    """A bad value, or a campaign that has no board of its own to watch."""
    path = tmp_path / "night.yaml"
    path.write_text(f"{head}out: results\nsteps:\n  - plan: conductance_map\n")
    with pytest.raises(CampaignError) as refused:
        load_campaign(path)
    assert any(e.startswith(error) for e in refused.value.errors), refused.value.errors


@pytest.mark.parametrize(
    ("suspend", "options", "error"),
    [
        ("{retry_fraction: {above: 2}}", [], "suspend.retry_fraction.above = 2 must be a fraction"),
        ("{retry_fraction: {above: 0.2}}", ["--stations", "st1"], "suspend: applies to campaigns"),
    ],
)
def test_the_cli_refuses_a_suspend_section_it_cannot_keep_before_connecting(
    suspend, options, error, tmp_path
):
    path = tmp_path / "night.yaml"
    path.write_text(  # a port nobody listens on: connecting would fail differently
        f"chip: socket://127.0.0.1:9\nout: results\nsuspend: {suspend}\n"
        "steps:\n  - plan: conductance_map\n"
    )
    done = subprocess.run(
        labcim("campaign", str(path), *options),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert error in done.stderr
    assert not (tmp_path / "results").exists()


def test_a_dry_run_lists_the_suspenders(tmp_path):
    path = tmp_path / "night.yaml"
    path.write_text(
        "chip: sim://pcm-small\nout: results\n"
        "suspend: {mean_rtt: {above: 0.05, give_up: 600}}\nsteps:\n  - plan: conductance_map\n"
    )
    done = subprocess.run(
        labcim("campaign", str(path), "--dry-run"), capture_output=True, text=True, check=True
    )
    want = (
        "suspend: board.fpga.mean_rtt above=0.05, resume_below=0.05, probe=1, sleep=5, give_up=600"
    )
    assert want in done.stdout


def test_a_link_bad_when_no_plan_ran_is_measured_again_by_the_next_plan(tmp_path):
    """bluesky's own suspender, tripped while the RunEngine is idle, makes the next plan
    wait at its start for a probe nobody sends; labcim's lets the plan's commands
    measure the link again."""
    board = connect("sim://pcm-small?cores=1&rows=8&cols=8&seed=1")
    RE = RunEngine({}, context_managers=[])  # run in a thread below
    RE.install_suspender(LinkSuspender(board.fpga.retry_fraction, 0.2, probe=0.01, sleep=0))
    board.fpga.retry_fraction.update(0.9)  # as the last commands of an earlier plan left it
    finished = []
    worker = threading.Thread(target=lambda: finished.append(RE(conductance_map(board))))
    worker.start()
    worker.join(30)
    try:
        assert finished, "the plan waited at its start"
        assert board.fpga.retry_fraction.get() == 0.0  # measured by the plan's commands
    finally:
        if worker.is_alive():
            RE.abort()
        board.close()


def test_a_suspender_watches_only_a_boards_link_health():
    board = connect("sim://pcm-small?cores=1&rows=8&cols=8&seed=1")
    try:
        with pytest.raises(ValueError, match=r"signal: expected a link-health signal"):
            LinkSuspender(board.fpga.clock, 1.0)
        with pytest.raises(ValueError, match=r"^probe = 0 must be a finite number > 0$"):
            LinkSuspender(board.fpga.mean_rtt, 0.01, probe=0)
    finally:
        board.close()

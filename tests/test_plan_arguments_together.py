"""Arguments that only fail together, or a plan's list and range checks, are refused at
the boundary before anything is connected: ``labcim run`` in a fresh process (exit 2,
one line, nothing at ``--out``, no connection made to the board or SMU), campaign files
(naming the step), and the plan itself when called from Python (the same message)."""

from __future__ import annotations

import socket
import textwrap

import pytest
from bluesky import RunEngine
from results_support import cli

from labcim.campaign import load_campaign
from labcim.campaign.schema import CampaignError
from labcim.connection import connect
from plans.characterization import mvm_characterization
from plans.iv import forming


@pytest.fixture
def listener():
    """A listening TCP port that counts the connections made to it."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock

    sock.close()


def connections(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            return n
        conn.close()
        n += 1


CASES = [
    ("network_inference", ["model=digits-mlp", "digital_budget=2"],
     "-p digital_budget: digital_budget = 2.0 is outside [0.0, 1.0]"),
    ("network_inference", ["model=digits-mlp", "times=[5, 1]"],
     "-p times: times = [5.0, 1.0] must be at least 1 finite time(s) (s), >= 0 and <= 1e+10, "
     "sorted"),
    ("network_inference", ["model=digits-mlp", "compensation=[global, sideways]"],
     "-p compensation: compensation[1] = 'sideways'; allowed: ['none', 'global', 'column']"),
    ("network_inference", ["model=digits-mlp", "X=[[0.5, 0.5], [0.1, 0.2]]", "y=[1]"],
     "-p y has 1 labels for 2 inputs"),
    ("mvm_characterization", ["n_vectors=10", "batch_size=3"],
     "-p batch_size = 3 must divide n_vectors = 10 "
     "(every event of a run has the same batch shape)"),
    ("mvm_characterization", ["adc_bits=[8, 40]"],
     "-p adc_bits: adc_bits[1] = 40 must be an integer [2, 16]"),
    ("retention", ["times=[10, 1e12]"],  # longer than any board clock (317 years) counts
     "-p times: times = [10.0, 1000000000000.0] must be at least 2 finite time(s) (s), "
     "> 0 and <= 1e+10, increasing"),
    ("retention", ["times=[10, 10]"],
     "-p times: times = [10.0, 10.0] must be at least 2 finite time(s) (s), > 0 and <= 1e+10, "
     "increasing"),
]  # fmt: skip


@pytest.mark.parametrize(("plan", "params", "message"), CASES)
def test_run_refuses_before_connecting_to_the_board(tmp_path, listener, plan, params, message):
    url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
    argv = ["run", plan, "--chip", url, "--out", str(tmp_path / "out")]
    result = cli(*argv, *[a for p in params for a in ("-p", p)])
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"labcim run: {message}\n"
    assert connections(listener) == 0
    assert not (tmp_path / "out").exists()


def test_forming_refuses_a_ramp_that_goes_down_before_opening_the_smu(tmp_path, listener):
    resource = f"TCPIP::127.0.0.1::{listener.getsockname()[1]}::SOCKET"
    argv = ["run", "forming", "--chip", resource, "--out", str(tmp_path / "out")]
    result = cli(*argv, "-p", "target_current=1e-5", "-p", "v_stop=-1", "-p", "v_start=0")
    assert result.returncode == 2, result.stderr
    assert result.stderr == "labcim run: -p v_stop = -1.0 V must be above v_start = 0.0 V\n"
    assert connections(listener) == 0


def test_a_campaign_names_the_step_whose_arguments_do_not_fit_together(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            chip: sim://pcm-small?cores=1&seed=0
            out: results
            steps:
              - plan: mvm_characterization
                args: {n_vectors: 12, batch_size: 4}
              - plan: mvm_characterization
                args: {batch_size: 4}
                over: {n_vectors: [8, 10, 16]}
            """
        )
    )
    with pytest.raises(CampaignError) as caught:
        load_campaign(path)
    assert caught.value.errors == [
        "steps[2] [n_vectors=10]: batch_size = 4 must divide n_vectors = 10 "
        "(every event of a run has the same batch shape)"
    ]


def test_the_plans_called_from_python_say_the_same():
    RE = RunEngine({})
    board = connect("sim://pcm-small?cores=1&seed=0")
    try:
        with pytest.raises(ValueError, match=r"^batch_size = 3 must divide n_vectors = 10 "):
            RE(mvm_characterization(board, n_vectors=10, batch_size=3))
    finally:
        board.close()
    with pytest.raises(ValueError, match=r"^v_stop = -1.0 V must be above v_start = 0.0 V$"):
        RE(forming(None, 1e-5, -1.0))

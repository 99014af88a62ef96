"""Per-argument checks of the plans: one function each, called by plans, CLI and queueserver."""

from pathlib import Path

import numpy as np
import pytest

from labcim import open_runs, session
from labcim.cli import main
from labcim.plan_args import ArgumentError, Integer, NonNegative, Number, OneOf, PlanSignature
from labcim.registry import available_plans, get_plan
from plans import mvm_characterization, tdp_program

W = np.eye(4)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (Integer(1), 0, "n = 0 must be an integer >= 1"),
        (Integer(1, 8), 9, r"n = 9 must be an integer \[1, 8\]"),
        (Integer(0), True, "n = True must be an integer >= 0"),
        (Number(positive=True), 0.0, "n = 0.0 must be a finite number > 0"),
        (Number(), float("nan"), "n = nan must be a finite number"),
        (NonNegative("s"), -1.0, "n = -1.0 s must be finite and >= 0"),
        (OneOf(("a", "b")), "c", r"n = 'c'; allowed: \['a', 'b'\]"),
        (OneOf((1, 2)), 1.0, r"n = 1.0; allowed: \[1, 2\]"),
    ],
)
def test_a_check_refuses_naming_the_argument_and_what_is_allowed(check, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check("n", value)


def test_a_check_passes_good_values_through_normalized():
    assert Integer(1)("n", np.int64(3)) == 3 and type(Integer(1)("n", np.int64(3))) is int
    assert Number()("n", 2) == 2.0 and NonNegative()("n", 0) == 0.0
    assert OneOf(("tdp",))("n", "tdp") == "tdp"


@pytest.mark.parametrize(
    ("arguments", "bad"),
    [
        ({"tolerance": -1.0}, {"tolerance": -1.0}),
        ({"strategy": "newton"}, {"strategy": "newton"}),
        ({"max_iterations": 0}, {"max_iterations": 0}),
        ({"settle": -2.0}, {"settle": -2.0}),
    ],
)
def test_plan_signature_refuses_what_the_plan_refuses_with_the_same_message(
    arguments, bad, tmp_path
):
    RE, board = session("sim://pcm-small?cores=1&rows=8&cols=8", tmp_path, quiet=True)
    with pytest.raises(ValueError) as by_the_plan:
        RE(tdp_program(board, W, **bad))
    board.close()
    with pytest.raises(ArgumentError) as by_the_signature:
        PlanSignature("tdp_program", tdp_program).bind(
            {"weights": W.tolist(), **arguments}, tmp_path, where="args."
        )
    (name,) = arguments
    assert by_the_signature.value.errors == [f"args.{name}: {by_the_plan.value}"]


def test_none_is_never_checked_and_defaults_pass():
    signature = PlanSignature("mvm_characterization", mvm_characterization)
    assert signature.bind({"tolerance": None, "seed": 3}, Path()) == {"tolerance": None, "seed": 3}


def test_labcim_run_refuses_a_bad_value_before_connecting(capsys):
    code = main(["run", "tdp_program", "--chip", "sim://nope", "--out", "x.h5",
                 "-p", "weights=[[1, 0], [0, 1]]", "-p", "max_iterations=0"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "-p max_iterations: max_iterations = 0 must be an integer >= 1" in err
    assert "Traceback" not in err and "nope" not in err


def test_every_plan_builds_a_queueserver_description_with_its_board_as_a_device():
    profile_ops = pytest.importorskip("bluesky_queueserver.manager.profile_ops")
    plans = {name: get_plan(name) for name in available_plans()}
    described = profile_ops.existing_plans_and_devices_from_nspace(nspace=plans)[0]
    assert set(described) == set(plans)
    for name, description in described.items():
        (first, *_) = description["parameters"]
        assert first["convert_device_names"] is True, name  # the board is named, then given
        assert first["annotation"]["type"] in ("__READABLE__", "str"), name


def test_no_plan_lets_its_md_replace_what_replay_and_calibration_read(tmp_path):
    """Every plan with an ``md`` refuses the start keys labcim and bluesky set, at the
    boundary (CLI, campaign, station: `PlanSignature`) and when called from Python."""
    takes_md = [
        name for name in available_plans() if "md" in PlanSignature(name, get_plan(name)).parameters
    ]
    assert {"tdp_program", "mvm_characterization", "network_inference", "iv_sweep"} <= set(takes_md)
    for name in takes_md:
        with pytest.raises(
            ArgumentError, match=r"md: board_identity: reserved; labcim or bluesky sets it"
        ):
            PlanSignature(name, get_plan(name)).bind({"md": {"board_identity": "x"}}, tmp_path)
    RE, board = session("sim://pcm-small?cores=1&seed=1", tmp_path / "r.h5", quiet=True)
    try:
        with pytest.raises(
            ValueError, match=r"^md: plan_name: reserved; labcim or bluesky sets it$"
        ):
            RE(tdp_program(board, W, cores=[0], md={"plan_name": "other"}))
        RE(tdp_program(board, W, cores=[0], md={"operator": "ada"}))
    finally:
        board.close()
    (run,) = open_runs(tmp_path / "r.h5")  # the refused call opened none
    assert run.plan_name == "tdp_program" and run.start["operator"] == "ada"

"""``labcim run``, `labcim.engine.session`, and plugin plans on a sim:// board."""

import re
import subprocess

import numpy as np
import pytest
from campaign_helpers import labcim, plugin_fixture  # noqa: F401  (the fixture "plugin")

from labcim.campaign import load_campaign, run_campaign
from labcim.cli import main
from labcim.engine import session
from labcim.hdf5 import open_runs

SIM = "sim://pcm-small?cores=2&seed=1"


def test_run_converts_arguments_and_saves_the_run(tmp_path, plugin, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "w.npy", np.eye(2))
    argv = ["--quiet", "run", "program", "--chip", "none", "--out", "out.h5"]
    argv += ["-p", "weights={file: w.npy}", "-p", "tolerance=0.1", "--md", "operator=ada"]
    assert main(argv) == 0
    assert "program: 1 run(s) saved to out.h5" in capsys.readouterr().out
    run = open_runs(tmp_path / "out.h5")[0]
    assert run.exit_status == "success" and run.metadata["operator"] == "ada"
    np.testing.assert_array_equal(run.plan_args["weights"], np.eye(2))
    assert run.plan_args["tolerance"] == 0.1 and run.plan_args["strategy"] == "tdp"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["nope"],
            "unknown plan 'nope'; available plans: adc_characterization, board_fault, conduc",
        ),
        (["slow_count", "-p", "count=3"], "-p count: unknown argument of slow_count; allowed:"),
        (["slow_count", "-p", "n=[1"], "-p n: the value is not valid YAML"),
        (["slow_count", "-p", "n"], "-p n: expected KEY=VALUE"),
        (["slow_count", "-p", "mode=slow"], "-p mode: must be one of 'fast', 'careful'"),
        (["program"], "-p: missing required argument 'weights' of program"),
    ],
)
def test_run_rejects_bad_arguments_before_running(tmp_path, plugin, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["run", *argv, "--chip", "none", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_run_lists_plugin_plans_with_their_arguments(plugin, capsys):
    assert main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^slow_count\s+Read a simulated detector", out, re.M)
    assert main(["run", "slow_count", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("cores", "n", "delay", "mode"):
        assert re.search(rf"^  {name} : ", out, re.M), name


def test_plugin_plan_runs_in_a_fresh_process(tmp_path, plugin):
    out = tmp_path / "out"
    command = labcim("--quiet", "run", "slow_count", "--chip", "none", "--out", str(out))
    done = subprocess.run(
        [*command, "-p", "n=2", "-p", "cores=[0,1]"],
        env=plugin,
        text=True,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    run = open_runs(out)[0]
    assert run.plan_args == {"cores": [0, 1], "n": 2, "delay": 0.05, "mode": "fast"}


def test_plugin_plans_on_a_simulated_board(tmp_path, plugin, capsys):
    path = tmp_path / "sim.yaml"
    path.write_text(
        f"chip: '{SIM}'\nout: results\non_failure: continue\n"
        "steps:\n"
        "  - plan: read_cores\n    over: {cores: [0, 1]}\n"
        "  - plan: set_adc_bits\n    args: {bits: 99}\n"
        "  - plan: read_cores\n"
    )
    result = run_campaign(load_campaign(path), progress=False)
    assert [o.status for o in result.outcomes] == ["success", "success", "fail"]
    assert result.stopped.startswith("hardware fault in 02-set_adc_bits: BoardRefusedError")
    runs = open_runs(tmp_path / "results")
    assert runs[1].streams["primary"]["board_core1_conductance_map"].shape[0] == 1
    assert main(["--quiet", "run", "read_cores", "--chip", SIM, "--out", str(tmp_path / "r")]) == 0


def test_session_gives_an_engine_saving_runs_and_the_board(tmp_path, plugin):
    from labcim_testplugin import read_cores

    RE, board = session(SIM, tmp_path / "data", quiet=True)
    try:
        assert board.n_cores.get() == 2 and RE.waiting_hook is None
        RE(read_cores(board, cores=[1]))
    finally:
        board.close()
    assert open_runs(tmp_path / "data")[0].exit_status == "success"
    RE, board = session("none", tmp_path / "data")
    assert board is None and RE.waiting_hook is not None

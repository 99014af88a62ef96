"""SMU plans from the command line and campaigns: a VISA resource as the instrument URL."""

import numpy as np
import pytest

from labcim import open_runs
from labcim.cli import main
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer


@pytest.fixture
def server():
    with SMUServer(ProbedRRAM(np.random.default_rng(7))) as srv:
        yield srv


def test_labcim_run_forming_then_iv_sweep_on_the_simulated_smu(server, tmp_path):
    out = str(tmp_path / "iv.h5")
    common = ["--quiet", "run", "--chip", server.resource, "--out", out]
    assert main([*common, "forming", "-p", "target_current=10e-6", "-p", "v_stop=4.0"]) == 0
    assert (
        main(
            [
                *common,
                "iv_sweep",
                "-p",
                "v_set=1.5",
                "-p",
                "v_reset=-1.5",
                "-p",
                "current_limit=50e-6",
                "-p",
                "reset_current_limit=200e-6",
            ]
        )
        == 0
    )
    forming, sweep = open_runs(out)
    assert (forming.plan_name, sweep.plan_name) == ("forming", "iv_sweep")
    assert forming.exit_status == sweep.exit_status == "success"
    assert sweep.metadata["plan_args"]["v_set"] == 1.5


def test_campaign_step_on_an_smu(server, tmp_path):
    (tmp_path / "iv.yaml").write_text(
        f"chip: '{server.resource}'\nout: iv.h5\nsteps:\n"
        "  - plan: forming\n    args: {target_current: 1.0e-5, v_stop: 4.0}\n"
    )
    assert main(["--quiet", "campaign", str(tmp_path / "iv.yaml")]) == 0
    (run,) = open_runs(tmp_path / "iv.h5")
    assert run.plan_name == "forming" and run.exit_status == "success"

"""The data contract of labcim.plan_data: what the plans record is what the readers read.

The plans build their keys and streams from the module and the readers find them there,
so a run recorded with instruments of any name reads back the same: key figures and
figures of runs on a board named ``chipA`` and an SMU named ``keithley``.
"""

from __future__ import annotations

import pytest
from plans_support import formed_and_swept

from labcim.key_figures import iv_switching, key_figures
from labcim.plan_data import (
    PLANS,
    RunData,
    SummaryKey,
    core_figure,
    is_link_key,
    mode_prefix,
    parse_summary_key,
    time_prefix,
)
from labcim.plots import save_run_plots


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        (core_figure(3, "weight_error"), SummaryKey("weight_error", 3)),
        (core_figure(0, "failed_cells", "program_"), SummaryKey("failed_cells", 0, True)),
        (
            mode_prefix(1, "1-phase", 6, 8) + "mvm_error",
            SummaryKey("mvm_error", 1, mode=("1-phase", 6, 8)),
        ),
        (
            f"{time_prefix(86400.0)}_global_accuracy",
            SummaryKey("accuracy", time=86400.0, compensation="global"),
        ),
        (
            f"{time_prefix(0.5)}_none_rmse_vs_software",
            SummaryKey("rmse_vs_software", time=0.5, compensation="none"),
        ),
        ("software_accuracy", SummaryKey("software_accuracy")),
    ],
)
def test_summary_keys_parse_back_to_what_built_them(key, parts):
    assert parse_summary_key(key) == parts


def test_link_keys_and_unknown_plans():
    assert is_link_key("board_fpga_retry_fraction") and is_link_key("chipA_fpga_mean_rtt")
    assert not is_link_key("board_fpga_clock") and not is_link_key("retries")

    class Other:
        plan_name, start, number = "my_lab_plan", {}, 1

    with pytest.raises(KeyError, match="'my_lab_plan' is not a plan whose data labcim describes"):
        RunData(Other())
    assert PLANS["forming"].device == "smu" and PLANS["tdp_program"].program_prefix == ""
    assert PLANS["retention"].program_prefix == "program_"


@pytest.fixture(scope="module")
def keithley_runs(tmp_path_factory):
    """Forming and two I-V cycles on an SMU device named ``keithley``."""
    return formed_and_swept(tmp_path_factory.mktemp("iv") / "iv.h5", 2, name="keithley")


def test_runs_of_a_named_smu_read_back_by_its_name(keithley_runs, tmp_path):
    formed, swept = keithley_runs
    data = RunData(swept)
    assert data.keys.smu.sweep_voltage == "keithley_sweep_voltage"
    assert data.keys.smu.sweep_voltage in data.stream("sweeps")
    assert len(iv_switching(swept)["cycle"]) == 2
    names = {f.name for f in key_figures(swept)}
    assert "SET voltage (median over cycles)" in names
    assert [p.name for p in save_run_plots(swept, tmp_path)] == ["iv_loops.png"]
    assert [p.name for p in save_run_plots(formed, tmp_path)] == ["forming.png"]
    with pytest.raises(KeyError, match="forming run 1 has no programming stream"):
        RunData(formed).stream("programming")

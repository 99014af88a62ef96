"""``labcim demo`` end to end: one HDF5 file, the PNG figures, printed figures = stored ones."""

import re

from labcim import open_runs
from labcim.cli import main
from labcim.demo import key_figures


def test_demo_writes_file_and_figures_and_prints_what_the_file_holds(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--quiet", "demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    runs = open_runs(out / "demo.h5")
    assert [r.plan_name for r in runs] == [
        "tdp_program",
        "mvm_characterization",
        "retention",
        "network_inference",
    ]
    assert all(r.exit_status == "success" for r in runs)
    pngs = {p.name for p in out.glob("*.png")}
    for name in (
        "conductance_map_core0",
        "programming_error_core0",
        "mvm_scatter",
        "drift_core2",
        "accuracy_vs_time",
    ):
        assert any(name in p for p in pngs), (name, pngs)
    assert all((out / p).stat().st_size > 10_000 for p in pngs)  # real images, not empty
    stored = [row for run in runs for row in key_figures(run)]
    for name, value in stored:
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(value)}$", printed, re.M), name
    figures = dict(stored)
    assert float(figures["MVM error 4-phase (%)"]) < float(figures["MVM error 1-phase (%)"])
    month = "digits accuracy at 1 month, {} (%)"
    assert float(figures[month.format("global")]) > float(figures[month.format("none")])

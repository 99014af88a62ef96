"""``labcim demo``: the whole workflow on the embedded simulated chip, in about a minute.

Programs a HERMES-style weight matrix with TDP write-verify, characterizes the MVM in
both read modes, follows conductance drift for a month of simulated time and runs a
digits network through a month of drift, with and without drift compensation.  Every
step is a bluesky run saved to one HDF5 results file, and the figures come back from
that file (so what is printed is what is stored).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from labcim.characterization import hermes_weights
from labcim.connection import connect
from labcim.engine import PlanAbortedError, run_engine, run_plan, stop_after_run
from labcim.hdf5 import open_runs
from labcim.hdf5.output import check_output
from labcim.hdf5.reader import Run
from labcim.output_files import check_free, labcim_png
from labcim.plan_data import core_figure, mode_prefix, time_prefix
from labcim.plots import save_run_plots
from labcim.registry import get_plan

CHIP = "sim://pcm-hermes?cores=8&seed=0"
"""Eight full 256 x 256 HERMES-like cores (two PCM devices per polarity)."""

DAY = 86400.0
RETENTION_TIMES = [60.0, 3600.0, DAY, 7 * DAY, 30 * DAY]
"""Seconds after programming at which the retention step reads the core."""

DRIFT_ONSET = 200.0
"""Drift onset t0 (s) of ``G(t) = G0 ((t + t0) / t0)^-nu`` in the retention fit: the
HERMES one-device value (Le Gallo et al., Nat. Electron. 6, 680 (2023)).  The plan's
default 0 fits a pure power law, whose exponent reads low for reads of minutes."""

INFERENCE_TIMES = [1.0, 3600.0, DAY, 30 * DAY]
"""Seconds after programming at which the network is evaluated."""

TIME_NAMES = {1.0: "1 s", 3600.0: "1 h", DAY: "1 day", 30 * DAY: "1 month"}

PLANS = ("tdp_program", "mvm_characterization", "retention", "network_inference")
"""The demo's plans, in order; its figures are named ``<plan>_<figure>.png``."""


def demo_steps(board: Any) -> list[tuple[str, Any]]:
    """The demo's plans, in order, as (title, plan generator) pairs."""
    # Plans come through the labcim.plans entry points: labcim never imports plans/.
    tdp_program, mvm_characterization, retention, network_inference = map(get_plan, PLANS)
    weights = hermes_weights(np.random.default_rng(0), board.rows.get(), board.cols.get())
    return [
        ("program a 256 x 256 matrix with TDP", tdp_program(board, weights, cores=[0])),
        (
            "characterize the MVM (4-phase, 1-phase)",
            mvm_characterization(
                board, cores=[1], read_modes=["4-phase", "1-phase"], n_vectors=1000
            ),
        ),
        (
            "follow drift for a month",
            retention(board, times=RETENTION_TIMES, cores=[2], t0=DRIFT_ONSET),
        ),
        (
            "run a digits network through a month of drift",
            network_inference(
                board,
                "digits-mlp",
                cores=[3, 4, 5],
                times=INFERENCE_TIMES,
                compensation=["none", "global"],
            ),
        ),
    ]


def key_figures(run: Run) -> list[tuple[str, str]]:
    """The figures the demo reports for one run, as (name, formatted value) pairs."""
    s = run.summary or {}
    if run.plan_name == "tdp_program":
        return [
            ("programming error (uS)", f"{s[core_figure(0, 'weight_error')]:.3f}"),
            ("programming error (% of g_max)", f"{s[core_figure(0, 'weight_error_pct')]:.2f}"),
            ("cells converged (%)", f"{100 * s[core_figure(0, 'converged_fraction')]:.2f}"),
        ]
    if run.plan_name == "mvm_characterization":
        return [
            (f"MVM error {mode} (%)", f"{s[mode_prefix(1, mode, 8, 8) + 'mvm_error']:.2f}")
            for mode in ("4-phase", "1-phase")
        ]
    if run.plan_name == "retention":
        onset = run.plan_args["t0"]
        nu = s[core_figure(2, "nu_median")]
        return [(f"drift exponent nu (median, t0 = {onset:g} s)", f"{nu:.4f}")]
    if run.plan_name == "network_inference":
        rows = [("digits accuracy, software (%)", f"{s['software_accuracy']:.2f}")]
        for t in INFERENCE_TIMES:
            for mode in ("none", "global"):
                value = s[f"{time_prefix(t)}_{mode}_accuracy"]
                rows.append((f"digits accuracy at {TIME_NAMES[t]}, {mode} (%)", f"{value:.2f}"))
        return rows
    return []


def run_demo(
    out: str | Path,
    *,
    chip: str = CHIP,
    progress: bool = True,
    on_pause: Callable[[], bool] | None = None,
) -> list[tuple[str, str]]:
    """Run the demo, write ``out/demo.h5`` and PNG figures in ``out``; return the table.

    A folder of an earlier demo may be given again: its results file gets the new runs
    (the old ones stay), and the table and figures are the new runs'.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    chip : str
        Chip URL; the embedded simulated chip by default.
    progress : bool
        Show progress bars.
    on_pause : callable, optional
        Called when a plan pauses (Ctrl-C); True resumes it, False aborts the demo
        (`labcim.engine.run_plan`).  Without it a pause aborts.

    Raises
    ------
    PlanAbortedError
        The demo was paused and then aborted: the run it was in is closed as aborted,
        the runs before it stay in the results file.
    ForeignFileError
        Before anything runs, if ``out/demo.h5`` or a PNG file named as the demo's
        figures are (``<plan>_*.png``) is not labcim's.
    """
    out = Path(out)
    results = out / "demo.h5"
    # What is in the way is refused before the demo runs: another program's results
    # file, or a figure of another program under a name the demo writes.
    check_output(results)
    named = tuple(f"{plan}_" for plan in PLANS)
    if out.is_dir():
        pngs = sorted(p for p in out.glob("*.png") if p.name.startswith(named))
        check_free((png, labcim_png, "figure") for png in pngs)
    out.mkdir(parents=True, exist_ok=True)
    RE = run_engine(results, progress=progress)
    board = connect(chip)
    uids: set[str] = set()
    try:
        steps = demo_steps(board)
        for i, (title, plan) in enumerate(steps, 1):
            if progress:
                print(f"-- {title}", flush=True)  # a log that is watched shows it now
            uids.update(run_plan(RE, plan, {}, on_pause))
            if i < len(steps) and stop_after_run(RE, on_pause):  # none after the last
                raise PlanAbortedError(f"interrupted after the step '{title}'")
    finally:
        board.close()
    table: list[tuple[str, str]] = []
    for run in open_runs(results):  # a folder of an earlier demo holds its runs too
        if run.uid in uids:
            table += key_figures(run)
            save_run_plots(run, out, prefix=f"{run.plan_name}_")
    return table


def format_table(rows: list[tuple[str, str]]) -> str:
    """Two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)

"""Figures of recorded runs: conductance maps, programming error, MVM, drift, accuracy, I-V.

Every function takes a :class:`labcim.hdf5.Run` (so it works on any results file, live or
old) and returns a matplotlib Figure; :func:`save_run_plots` picks the figures that fit a
run's plan and writes them as PNG.  Figures are made with matplotlib's object API
(``Figure`` without pyplot), so no display or global backend is involved (CI, a campaign
on a headless machine) and nothing leaks between plots.  They show themselves in Jupyter
and IPython as PNG (:class:`Figure` has ``_repr_png_``) whatever the backend: inline,
widget (ipympl) or none.

Each figure states on itself the definition of what it shows and the number it
illustrates, computed as the run's summary computes it (`labcim.key_figures` names the
same numbers): the programming-error histogram is over the cells not failed, as
``weight_error``; the convergence plot marks the cells that never met the tolerance,
as ``converged_fraction``; an MVM panel per read mode and bit width carries its
``mvm_error``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.figure
import numpy as np

from labcim.chip_identity import ChipIdentity
from labcim.hdf5.reader import Run
from labcim.key_figures import iv_switching
from labcim.output_files import PNG_SOFTWARE, labcim_png, write_file
from labcim.plan_data import (
    BRANCH,
    COMPENSATION,
    CYCLE,
    ELAPSED,
    ITERATION,
    RunData,
    core_figure,
    mode_prefix,
)


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that Jupyter displays as a PNG image without pyplot.

    A Figure made without pyplot has no display hook: Jupyter would show the text
    ``<Figure size 550x450 with 2 Axes>``.  ``_repr_png_`` is IPython's rich-display
    protocol, used by every frontend and backend (a pyplot figure needs the inline
    backend's own formatter, which only exists once pyplot is imported).
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=PNG_DPI)
        return buffer.getvalue()


PNG_DPI = 110
"""Resolution of the PNG files and of the images shown in Jupyter (dots per inch)."""


def _save_png(fig: matplotlib.figure.Figure, path: Path) -> None:
    fig.savefig(path, format="png", dpi=PNG_DPI, metadata={"Software": PNG_SOFTWARE})


def _data(run: Run) -> RunData:
    return RunData(run)


def _cores_with(run: Run, what: str, key: str) -> list[int]:
    """The cores whose data key ``key`` (a `CoreKeys` name) is in the ``what`` stream."""
    data = _data(run)
    if not data.has(what):
        return []
    stream, n = data.stream(what), run.metadata["board_identity"]["n_cores"]
    return [c for c in range(n) if getattr(data.keys.core(c), key) in stream]


def _polarity_sum(g_map: np.ndarray, dpp: int) -> np.ndarray:
    """Per-polarity conductance (2, rows, cols) uS from a device map (2*dpp, rows, cols)."""
    return g_map.reshape(2, dpp, *g_map.shape[1:]).sum(axis=1)


def _final_map(run: Run, core: int, what: str) -> np.ndarray:
    """The last map of ``core`` in the ``what`` stream (``"verify"`` or ``"reads"``)."""
    data = _data(run)
    stream, key = data.stream(what), data.keys.core(core).conductance_map
    if key not in stream:
        raise KeyError(f"{run.plan_name} run {run.number} read no conductance map of core {core}")
    return np.asarray(stream[key][-1])


def _dpp(run: Run) -> int:
    return int(run.metadata["board_identity"]["devices_per_polarity"])


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _note(ax: Any, text: str, right: bool = False) -> None:
    """The definition of what the axes show, in small print in a top corner."""
    x, ha = (0.99, "right") if right else (0.01, "left")
    ax.text(x, 0.99, text, transform=ax.transAxes, va="top", ha=ha, fontsize=7.5)


def conductance_map(run: Run, core: int, what: str = "verify") -> Figure:
    """Final differential conductance G+ - G- (uS) of one core, as an image: its verify
    read after programming (``what="verify"``) or its last read (``"reads"``)."""
    g = _polarity_sum(_final_map(run, core, what), _dpp(run))
    fig = _figure(5.5, 4.5)
    ax = fig.subplots()
    lim = float(np.abs(g[0] - g[1]).max()) or 1.0
    im = ax.imshow(g[0] - g[1], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="G+ - G- (uS)")
    stream = "verify read" if what == "verify" else "last read"
    ax.set(
        title=f"{run.plan_name}: core {core} conductance map ({stream})",
        xlabel="column",
        ylabel="row",
    )
    return fig


def _programming(run: Run, core: int) -> dict[str, Any]:
    """The programming job of ``core`` in the run's metadata (one per layer for
    network_inference)."""
    prog = run.metadata.get("programming")
    if prog is None:
        raise KeyError(f"{run.plan_name} run {run.number} programmed no core")
    jobs = [prog] if "strategy" in prog else [j for j in prog.values() if isinstance(j, dict)]
    for job in jobs:
        if f"core{core}" in job["targets"]:
            return job
    cores = sorted(int(name.removeprefix("core")) for j in jobs for name in j["targets"])
    raise KeyError(
        f"{run.plan_name} run {run.number} did not program core {core}; it programmed {cores}"
    )


def programming_errors(run: Run, core: int) -> np.ndarray:
    """Programmed minus goal conductance (uS) of every cell polarity not failed, at the
    verify read: the errors whose std is the summary's ``weight_error``.

    The goal is what the strategy programmed each cell to (the target; plus the RRAM
    floor for ISPP), rebuilt from the run's record; failed cells (a dead device) are
    the summary's ``failed_cells``.
    """
    from labcim.writeverify import strategy_for_chip

    prog = _programming(run, core)
    strategy = strategy_for_chip(
        prog["strategy"],
        ChipIdentity.from_record(run.metadata["board_identity"]),
        tolerance=prog["tolerance"],
        max_iterations=prog["max_iterations"],
        **prog["params"],
    )
    targets = np.asarray(prog["targets"][f"core{core}"], np.float64)
    goal = strategy.start(targets).goal
    r, c = targets.shape[1:]
    err = _polarity_sum(_final_map(run, core, "verify"), _dpp(run))[:, :r, :c] - goal
    keep = np.ones(err.shape, bool)
    failed = _data(run).programming_figure(core, "failed_cells")
    if failed is not None and len(failed):
        keep[tuple(np.asarray(failed).T)] = False
    return err[keep]


def programming_error_histogram(run: Run, core: int) -> Figure:
    """Histogram of the programming error (uS) after write-verify, over the cells not
    failed; its std is the summary's ``weight_error``."""
    err = programming_errors(run, core)
    failed = _data(run).programming_figure(core, "failed")
    span = 3.0
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    ax.hist(np.clip(err, -span, span), bins=np.linspace(-span, span, 121), color="tab:blue")
    beyond = int((np.abs(err) > span).sum())
    ax.set(
        title=f"{run.plan_name}: core {core} programming error\nstd {err.std():.3f} uS",
        xlabel="programmed - target at the verify read (uS)",
        ylabel="cell polarities",
    )
    _note(
        ax,
        f"std over the {err.size} cells not failed (weight_error)\n"
        f"{failed if failed is not None else '?'} failed cells (dead device) left out\n"
        f"{beyond} beyond +-{span:g} uS counted in the end bins",
    )
    return fig


def convergence(run: Run) -> Figure:
    """Cells out of tolerance at each verify read vs write-verify iteration, per core,
    and the cells that never met the tolerance (the summary's ``converged_fraction``)."""
    data = _data(run)
    stream = data.stream("programming")
    fig = _figure(6, 4.2)
    ax = fig.subplots()
    iteration = np.asarray(stream[ITERATION])
    for core in _cores_with(run, "programming", "out_of_tolerance"):
        (line,) = ax.semilogy(
            iteration,
            np.maximum(np.asarray(stream[data.keys.core(core).out_of_tolerance]), 0.5),
            marker="o",
            ms=3,
            label=f"core {core}: out of tolerance at this verify read",
        )
        cells = data.programming_figure(core, "cells")
        converged = data.programming_figure(core, "converged_fraction")
        if cells is not None and converged is not None:
            never = round(cells * (1 - converged))
            ax.axhline(
                max(never, 0.5),
                color=line.get_color(),
                ls="--",
                label=f"core {core}: never met tolerance: {never} "
                f"({100 * (1 - converged):.2f} %; converged {100 * converged:.2f} %)",
            )
    ax.set(
        title=f"{run.plan_name}: write-verify convergence",
        xlabel="iteration (pulse batches)",
        ylabel="cells",
    )
    _note(
        ax,
        "converged = met the tolerance at some verify read;\n"
        "relaxation and read noise move converged cells\n"
        "out again: the solid line ends above the dashed",
        right=True,
    )
    ax.legend(fontsize=7, loc="lower left")
    return fig


def mvm_scatter(run: Run, core: int | None = None, max_points: int = 20000) -> Figure:
    """MVM outputs measured vs ideal (uA) of one core, a panel per read mode and bit
    widths, each with its ``mvm_error`` (the ideal on the read-back conductances)."""
    data = _data(run)
    stream = data.stream("mvm")
    core = _cores_with(run, "mvm", "mvm_outputs")[0] if core is None else core
    keys = data.keys.core(core)
    measured = np.asarray(stream[keys.mvm_outputs])
    ideal = np.asarray(stream[keys.mvm_ideal_readback])
    combos = list(
        zip(
            np.asarray(stream[keys.read_mode]).astype(str),
            np.asarray(stream[keys.dac_bits]).astype(int),
            np.asarray(stream[keys.adc_bits]).astype(int),
            strict=True,
        )
    )
    panels = list(dict.fromkeys(combos))
    fig = _figure(3.6 * len(panels) + 0.4, 4)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0])
    lim = float(np.abs(ideal).max()) or 1.0
    for ax, combo in zip(axes, panels, strict=True):
        mode, dac, adc = combo
        sel = np.array([c == combo for c in combos])
        x, y = ideal[sel].ravel(), measured[sel].ravel()
        step = max(1, x.size // max_points)
        ax.plot(x[::step], y[::step], ".", ms=1.5, alpha=0.4, color="tab:blue")
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
        key = mode_prefix(core, mode, dac, adc) + "mvm_error"
        error = (run.summary or {}).get(key)
        shown = f"\nMVM error {error:.2f} %" if error is not None else ""
        ax.set_title(f"{mode}, {dac}-bit in / {adc}-bit out{shown}", fontsize=10)
        ax.set_xlabel("ideal output (uA)")
    axes[0].set_ylabel("measured output (uA)")
    _note(axes[0], "ideal: on the conductances read back\nbefore the MVMs (mvm_error)")
    gap = "\n" if len(panels) == 1 else " "  # one panel is too narrow for one line
    fig.suptitle(f"{run.plan_name}: core {core}{gap}MVM, measured vs ideal")
    return fig


def drift(run: Run, core: int) -> Figure:
    """Median G(t)/G(t_first) per conductance level vs time (log-log), with the fitted nu."""
    s = run.summary
    elapsed = np.asarray(_data(run).stream("reads")[ELAPSED])
    ratio, level, nu = (np.asarray(s[core_figure(core, k)]) for k in ("ratio", "level", "nu"))
    t0 = (run.plan_args or {}).get("t0", 0.0)
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    for j in range(ratio.shape[1]):
        ax.loglog(elapsed, ratio[:, j], marker="o", label=f"{level[j]:.1f} uS, nu = {nu[j]:.3f}")
    ax.set(
        title=f"{run.plan_name}: core {core} conductance drift",
        xlabel="time since programming (s)",
        ylabel="median G(t) / G(t first)",
    )
    _note(ax, f"nu: per-device fit of log G on log(t + t0), t0 = {t0:g} s;\nmedian per level")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def accuracy_vs_time(run: Run) -> Figure:
    """Network accuracy (or RMSE) vs time since programming, per drift compensation."""
    ev = _data(run).stream("evaluation")
    metric = "accuracy" if "accuracy" in ev else "rmse"
    elapsed = np.asarray(ev[ELAPSED])
    modes = np.asarray(ev[COMPENSATION]).astype(str)
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    for mode in dict.fromkeys(modes):
        sel = modes == mode
        ax.semilogx(
            elapsed[sel], np.asarray(ev[metric])[sel], marker="o", label=f"compensation: {mode}"
        )
    software = (run.summary or {}).get(f"software_{metric}")
    if software is not None:
        ax.axhline(software, color="k", ls="--", lw=0.8, label="software")
    unit = " (%)" if metric == "accuracy" else ""
    ax.set(
        title=f"{run.plan_name}: {metric} after drift",
        xlabel="time since programming (s)",
        ylabel=metric + unit,
    )
    ax.legend()
    return fig


def iv_loops(run: Run) -> Figure:
    """I-V loops of an ``iv_sweep`` run (|I| on a log scale), and per cycle the SET and
    RESET voltages and the on and off conductances (`labcim.key_figures.iv_switching`)."""
    data = _data(run)
    sweeps, smu = data.stream("sweeps"), data.keys.smu
    branch = np.asarray(sweeps[BRANCH])
    cycle = np.asarray(sweeps[CYCLE])
    v = np.asarray(sweeps[smu.sweep_voltage])
    i = np.asarray(sweeps[smu.sweep_current])
    sw = iv_switching(run)
    fig = _figure(12, 4)
    loops, volts, conductance = fig.subplots(1, 3)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(int(cycle.max()) + 1, 1)))
    for vb, ib, k, b in zip(v, i, cycle, branch, strict=True):
        loops.semilogy(
            vb,
            np.maximum(np.abs(ib), 1e-12),
            color=colors[int(k)],
            lw=1,
            label=f"cycle {int(k)}" if b == 0 else None,
        )
    loops.set(title="I-V loops", xlabel="voltage (V)", ylabel="|current| (A)")
    if len(colors) <= 8:
        loops.legend(fontsize=7)
    volts.plot(sw["cycle"], sw["set_voltage"], "o-", label="SET (first point at 90 % of limit)")
    volts.plot(sw["cycle"], sw["reset_voltage"], "s-", label="RESET (largest |I| going out)")
    volts.set(title="switching voltages", xlabel="cycle", ylabel="voltage (V)")
    volts.legend(fontsize=7)
    conductance.semilogy(sw["cycle"], sw["g_on"], "o-", label="on (end of SET branch)")
    conductance.semilogy(sw["cycle"], sw["g_off"], "s-", label="off (end of RESET branch)")
    conductance.set(title="on / off conductance", xlabel="cycle", ylabel="|I / V| (uS)")
    conductance.legend(fontsize=7)
    fig.suptitle(f"{run.plan_name}: {len(sw['cycle'])} cycle(s)")
    return fig


def forming_curve(run: Run) -> Figure:
    """Current vs voltage of a ``forming`` run up to forming, with the target current
    and the forming voltage."""
    data = _data(run)
    steps, smu = data.stream("sweeps"), data.keys.smu
    v = np.asarray(steps[smu.voltage])
    i = np.asarray(steps[smu.current])
    s = run.summary or {}
    target = (run.plan_args or {}).get("target_current")
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    ax.semilogy(v, np.maximum(np.abs(i), 1e-12), "o-", ms=3, label="|current|")
    if target:
        ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:g} A")
    if s.get("formed"):
        ax.axvline(
            s["forming_voltage"],
            color="tab:red",
            lw=0.8,
            label=f"formed at {s['forming_voltage']:g} V",
        )
    state = "formed" if s.get("formed") else "not formed"
    ax.set(
        title=f"{run.plan_name}: {state} after {len(v)} steps",
        xlabel="voltage (V)",
        ylabel="|current| (A)",
    )
    ax.legend(fontsize=8)
    return fig


def _per_core(plot: Callable[[Run, int], Figure], cores: Callable[[Run], list[int]]) -> Callable:
    return lambda run: {f"core{c}": plot(run, c) for c in cores(run)}


def _programmed(run: Run) -> bool:
    return bool(run.metadata.get("programming")) and _data(run).has("programming")


def _maps(what: str) -> Callable[[Run], list[int]]:
    return lambda run: _cores_with(run, what, "conductance_map")


PLOTS: dict[str, dict[str, Callable[[Run], Any]]] = {
    "tdp_program": {
        "conductance_map": _per_core(conductance_map, _maps("verify")),
        "programming_error": _per_core(programming_error_histogram, _maps("verify")),
        "programming_convergence": convergence,
    },
    "mvm_characterization": {
        "mvm_scatter": _per_core(mvm_scatter, lambda r: _cores_with(r, "mvm", "mvm_outputs")),
        "programming_error": _per_core(programming_error_histogram, _maps("verify")),
        "programming_convergence": convergence,
    },
    "retention": {
        "drift": _per_core(drift, _maps("reads")),
        "programming_convergence": convergence,
    },
    "conductance_map": {
        "conductance_map": _per_core(
            lambda run, core: conductance_map(run, core, "reads"), _maps("reads")
        )
    },
    "network_inference": {
        "accuracy_vs_time": accuracy_vs_time,
        "programming_convergence": convergence,
    },
    "iv_sweep": {"iv_loops": iv_loops},
    "forming": {"forming": forming_curve},
}
"""The figures drawn for each plan, by the name their files get; per-core ones return a
dict.  ``programming_*`` figures are of the write-verify a plan ran before measuring."""

NEEDS_PROGRAMMING = ("programming_error", "programming_convergence")
"""Figures left out for a run that did not program (e.g. ``program=False``)."""


def save_run_plots(run: Run, out: str | Path, prefix: str = "") -> list[Path]:
    """Write the figures that fit ``run``'s plan into directory ``out`` as PNG files,
    named ``<prefix><figure>[_coreN].png``.

    Returns the paths written (none for a plan with no figures or an incomplete run).
    A file of the same name that labcim wrote is replaced.

    Raises
    ------
    ForeignFileError
        A file labcim did not write is at one of the names (it is left as it is; the
        figures before it in the order above are written).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if run.exit_status != "success":
        return paths
    for name, make in PLOTS.get(run.plan_name or "", {}).items():
        if name in NEEDS_PROGRAMMING and run.plan_name != "tdp_program" and not _programmed(run):
            continue
        made = make(run)
        figures = made if isinstance(made, dict) else {"": made}
        for suffix, fig in figures.items():
            path = out / "_".join(p for p in (prefix + name, suffix) if p)
            path = path.with_suffix(".png")
            paths.append(write_file(path, partial(_save_png, fig), labcim_png, "figure"))
    return paths

"""Figures of recorded runs: conductance maps, programming error, MVM, drift, accuracy.

Every function takes a :class:`labcim.hdf5.Run` (so it works on any results file, live or
old) and returns a matplotlib Figure; :func:`save_run_plots` picks the figures that fit a
run's plan and writes them as PNG.  Figures are made with matplotlib's object API
(``Figure`` without pyplot), so no display or global backend is involved (CI, a campaign
on a headless machine) and nothing leaks between plots.  They show themselves in Jupyter
and IPython as PNG (:class:`Figure` has ``_repr_png_``) whatever the backend: inline,
widget (ipympl) or none.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.figure
import numpy as np

from labcim.hdf5.reader import Run


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

MAP_KEY = re.compile(r"board_core(\d+)_conductance_map$")


def _cores_with_maps(run: Run, stream: str) -> list[int]:
    keys = run.streams.get(stream, {})
    return sorted(int(m.group(1)) for k in keys if (m := MAP_KEY.match(k)))


def _polarity_sum(g_map: np.ndarray, dpp: int) -> np.ndarray:
    """Per-polarity conductance (2, rows, cols) uS from a device map (2*dpp, rows, cols)."""
    return g_map.reshape(2, dpp, *g_map.shape[1:]).sum(axis=1)


def _final_map(run: Run, core: int) -> np.ndarray:
    stream = "verify" if "verify" in run.streams else "primary"
    return np.asarray(run.streams[stream][f"board_core{core}_conductance_map"][-1])


def _dpp(run: Run) -> int:
    return int(run.metadata["board_identity"]["devices_per_polarity"])


def conductance_map(run: Run, core: int) -> Figure:
    """Final differential conductance G+ - G- (uS) of one core, as an image."""
    g = _polarity_sum(_final_map(run, core), _dpp(run))
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    lim = float(np.abs(g[0] - g[1]).max()) or 1.0
    im = ax.imshow(g[0] - g[1], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="G+ - G- (uS)")
    ax.set(title=f"{run.plan_name}: core {core} conductance map", xlabel="column", ylabel="row")
    fig.tight_layout()
    return fig


def programming_errors(run: Run, core: int) -> np.ndarray:
    """Programmed minus target conductance (uS) of every cell polarity with a target."""
    targets = np.asarray(run.metadata["programming"]["targets"][f"core{core}"])
    g = _polarity_sum(_final_map(run, core), _dpp(run))[:, : targets.shape[1], : targets.shape[2]]
    return (g - targets).ravel()


def programming_error_histogram(run: Run, core: int) -> Figure:
    """Histogram of the programming error (uS) after write-verify."""
    err = programming_errors(run, core)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    ax.hist(err, bins=np.linspace(-3, 3, 121), color="tab:blue")
    ax.set(
        title=f"core {core}: programming error, std {err.std():.3f} uS",
        xlabel="programmed - target (uS)",
        ylabel="cell polarities",
    )
    fig.tight_layout()
    return fig


def convergence(run: Run) -> Figure:
    """Cells out of tolerance vs write-verify iteration, per core."""
    stream = run.streams["program" if "program" in run.streams else "primary"]
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for key in stream:
        if m := re.match(r"board_core(\d+)_out_of_tolerance$", key):
            ax.semilogy(
                np.asarray(stream["iteration"]),
                np.maximum(np.asarray(stream[key]), 0.5),
                marker="o",
                label=f"core {m.group(1)}",
            )
    ax.set(title="write-verify convergence", xlabel="iteration", ylabel="cells out of tolerance")
    ax.legend()
    fig.tight_layout()
    return fig


def mvm_scatter(run: Run, max_points: int = 20000) -> Figure:
    """MVM outputs measured vs ideal (uA), one colour per core and read mode."""
    stream = run.streams["primary"]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    lim = 0.0
    for key in stream:
        m = re.match(r"board_core(\d+)_mvm_outputs$", key)
        if not m:
            continue
        core = m.group(1)
        ideal_key = f"board_core{core}_mvm_ideal_readback"
        measured, ideal = np.asarray(stream[key]), np.asarray(stream[ideal_key])
        modes = np.asarray(stream[f"board_core{core}_read_mode"]).astype(str)
        for mode in dict.fromkeys(modes):
            sel = modes == mode
            x, y = ideal[sel].ravel(), measured[sel].ravel()
            step = max(1, x.size // max_points)
            ax.plot(x[::step], y[::step], ".", ms=1.5, alpha=0.5, label=f"core {core} {mode}")
            lim = max(lim, float(np.abs(x).max()))
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    ax.set(
        title="MVM: measured vs ideal", xlabel="ideal output (uA)", ylabel="measured output (uA)"
    )
    ax.legend(markerscale=8)
    fig.tight_layout()
    return fig


def drift(run: Run, core: int) -> Figure:
    """Median G(t)/G(t_first) per conductance level vs time (log-log), with the fitted nu."""
    s = run.summary
    elapsed = np.asarray(run.streams["primary"]["elapsed"])
    ratio, level, nu = (np.asarray(s[f"core{core}_{k}"]) for k in ("ratio", "level", "nu"))
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for j in range(ratio.shape[1]):
        ax.loglog(elapsed, ratio[:, j], marker="o", label=f"{level[j]:.1f} uS, nu = {nu[j]:.3f}")
    ax.set(
        title=f"core {core}: conductance drift",
        xlabel="time since programming (s)",
        ylabel="median G(t) / G(t first)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def accuracy_vs_time(run: Run) -> Figure:
    """Network accuracy (or RMSE) vs time since programming, per drift compensation."""
    ev = run.streams["evaluation"]
    metric = "accuracy" if "accuracy" in ev else "rmse"
    elapsed = np.asarray(ev["elapsed"])
    modes = np.asarray(ev["compensation"]).astype(str)
    fig = Figure(figsize=(5.5, 4))
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
    fig.tight_layout()
    return fig


def _per_core(plot: Callable[[Run, int], Figure], stream: str) -> Callable[[Run], dict]:
    return lambda run: {f"core{c}": plot(run, c) for c in _cores_with_maps(run, stream)}


PLOTS: dict[str, dict[str, Callable[[Run], Any]]] = {
    "tdp_program": {
        "conductance_map": _per_core(conductance_map, "verify"),
        "programming_error": _per_core(programming_error_histogram, "verify"),
        "convergence": convergence,
    },
    "mvm_characterization": {"mvm_scatter": mvm_scatter, "convergence": convergence},
    "retention": {"drift": _per_core(drift, "primary"), "convergence": convergence},
    "network_inference": {"accuracy_vs_time": accuracy_vs_time, "convergence": convergence},
}
"""The figures drawn for each plan, by figure name; per-core ones return a dict."""


def save_run_plots(run: Run, out: str | Path, prefix: str = "") -> list[Path]:
    """Write the figures that fit ``run``'s plan into directory ``out`` as PNG files.

    Returns the paths written (none for a plan with no figures or an incomplete run).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if run.exit_status != "success":
        return paths
    for name, make in PLOTS.get(run.plan_name or "", {}).items():
        made = make(run)
        figures = made if isinstance(made, dict) else {"": made}
        for suffix, fig in figures.items():
            path = out / "_".join(p for p in (prefix + name, suffix) if p)
            path = path.with_suffix(".png")
            fig.savefig(path, dpi=PNG_DPI)
            paths.append(path)
    return paths

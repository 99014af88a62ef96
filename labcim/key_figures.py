"""The key figures of a recorded run, named, with units, grouped per core.

One definition of each number, shared by ``labcim show`` (table and ``--json``), the
tabular export (`labcim.export`) and the figures (`labcim.plots` states the same numbers
on its plots).  Most key figures are the scalars of the run's ``summary`` stream, named
after their key without the core prefix and with the unit the plan recorded; a few are
derived from the recorded streams where the summary holds arrays (`iv_switching` for
``iv_sweep``, drift exponents per conductance level for ``retention``).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labcim.hdf5.layout import SUMMARY_STREAM
from labcim.hdf5.reader import Run
from labcim.plan_data import BRANCH, RunData, SummaryKey, core_figure, parse_summary_key

UNITS = {"weight_error": "uS", "weight_error_pct": "%"}
"""Units of per-core keys (without the prefix) that runs of older labcim versions did not
record (the programming figures of ``retention``)."""

NAMES = {
    "weight_error": "programming error (std over cells not failed)",
    "weight_error_pct": "programming error (of full-scale cell conductance)",
    "converged_fraction": "converged (met tolerance at a verify read)",
    "iterations": "pulse batches",
    "dead_devices": "dead devices",
    "nu_median": "drift exponent nu (median over devices)",
    "read_noise": "read noise (rms of consecutive reads / sqrt 2)",
}
"""Readable names of the keys whose own name does not say enough."""


@dataclass(frozen=True)
class KeyFigure:
    """One number of a run.

    Attributes
    ----------
    group : str
        ``"core 0"``, ``"core 0 programming"`` (a plan that programmed first), or
        ``"run"`` for figures of the whole run.
    name : str
        What it is, in words.
    value : float, int, bool or str
        The value, in ``unit`` (fractions are given in %).
    unit : str
        ``"uS"``, ``"%"``, ``"V"``, ... or ``""``.
    key : str
        The summary key it comes from (``""`` for figures derived from the streams).
    """

    group: str
    name: str
    value: Any
    unit: str
    key: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: NaN becomes None."""
        out = asdict(self)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            out["value"] = None
        return out


def key_figures(run: Run) -> list[KeyFigure]:
    """The key figures of ``run``, grouped (run-wide first, then per core in order)."""
    summary = run.summary or {}
    units = {}
    if SUMMARY_STREAM in run.streams:
        stream = run.streams[SUMMARY_STREAM]
        units = {k: v.get("units") or "" for k, v in stream.data_keys.items()}
    figures = [_scalar(k, v, units.get(k, "")) for k, v in summary.items() if _is_scalar(v)]
    derive = DERIVED.get(run.plan_name or "")
    if derive is not None:
        figures += derive(run)
    return sorted(figures, key=_order)


def _is_scalar(value: Any) -> bool:
    return np.ndim(value) == 0 and isinstance(value, int | float | bool | str | np.generic)


def _order(figure: KeyFigure) -> tuple:
    # Groups: the run first, then the cores by number.  Inside a group the recorded
    # order stays, except that figures taken at a time come after the others, by time
    # in seconds (the file lists keys as text, where "t2592000" sorts before "t3600").
    m = re.match(r"core (\d+)", figure.group)
    group = (0, 0, "") if m is None else (1, int(m.group(1)), figure.group)
    time = parse_summary_key(figure.key).time if figure.key else None
    return (*group, time is not None, time or 0.0)


def _scalar(key: str, value: Any, unit: str) -> KeyFigure:
    value = value.item() if isinstance(value, np.generic) else value
    parts = parse_summary_key(key)
    group = "run"
    if parts.core is not None:
        group = f"core {parts.core}" + (" programming" if parts.programming else "")
        unit = unit or UNITS.get(parts.figure, "")
    if parts.figure.endswith("_fraction") and isinstance(value, float) and not unit:
        value, unit = 100.0 * value, "%"
    return KeyFigure(group, _name(parts), value, unit, key)


def _name(parts: SummaryKey) -> str:
    what = NAMES.get(parts.figure, parts.figure.replace("_", " "))
    if parts.time is not None:
        return f"{what} at {_duration(parts.time)}, compensation {parts.compensation}"
    if parts.mode is not None:  # mvm_characterization
        mode, dac, adc = parts.mode
        return f"{mode}, {dac}-bit in / {adc}-bit out: {what}"
    return what


def _duration(seconds: float) -> str:
    """``1 s``, ``1 h``, ``1 day``, ``30 days`` ..."""
    for unit, size in (("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            n = int(seconds / size)
            return f"{n} {unit}" + ("s" if unit == "day" and n > 1 else "")
    return f"{seconds:g} s"


# -- figures derived from the streams --------------------------------------------------


def iv_switching(run: Run) -> dict[str, np.ndarray]:
    """Per cycle of an ``iv_sweep`` run: SET and RESET voltages (V), on and off
    conductances (uS).

    ``set_voltage`` is the first voltage of the SET branch at 90 % of its current limit
    (the summary's ``set_v_limit``); ``reset_voltage`` the voltage of the largest |I| on
    the way out of the RESET branch, where the current starts to fall; ``g_on`` /
    ``g_off`` the summary's |I/V| at the last nonzero point of each branch.
    """
    data = RunData(run)
    sweeps, smu = data.stream("sweeps"), data.keys.smu
    branch = np.asarray(sweeps[BRANCH])
    v = np.asarray(sweeps[smu.sweep_voltage])
    i = np.asarray(sweeps[smu.sweep_current])
    reset = []
    for vb, ib in zip(v[branch == 1], i[branch == 1], strict=True):
        out = np.arange(int(np.argmax(np.abs(vb))) + 1)  # from 0 V to the peak
        reset.append(float(vb[out[np.argmax(np.abs(ib[out]))]]))
    s = run.summary or {}
    return {
        "cycle": np.arange(len(reset)),
        "set_voltage": np.asarray(s.get("set_v_limit", np.full(len(reset), np.nan)), float),
        "reset_voltage": np.asarray(reset, float),
        "g_on": np.asarray(s.get("g_on", np.full(len(reset), np.nan)), float),
        "g_off": np.asarray(s.get("g_off", np.full(len(reset), np.nan)), float),
    }


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _iv_sweep(run: Run) -> list[KeyFigure]:
    if run.summary is None or not RunData(run).has("sweeps"):
        return []
    sw = iv_switching(run)
    ratio = sw["g_on"] / sw["g_off"]
    reached = int(np.isfinite(sw["set_voltage"]).sum())
    rows = [
        ("cycles", len(sw["cycle"]), ""),
        ("SET voltage (median over cycles)", _median(sw["set_voltage"]), "V"),
        ("RESET voltage (median over cycles)", _median(sw["reset_voltage"]), "V"),
        ("on conductance (median over cycles)", _median(sw["g_on"]), "uS"),
        ("off conductance (median over cycles)", _median(sw["g_off"]), "uS"),
        ("on/off ratio (median over cycles)", _median(ratio), ""),
        ("cycles that reached the SET current limit", reached, ""),
    ]
    return [KeyFigure("run", name, value, unit, "") for name, value, unit in rows]


def _retention(run: Run) -> list[KeyFigure]:
    figures = []
    summary = run.summary or {}
    for key, nu in summary.items():
        parts = parse_summary_key(key)
        levels = summary.get(core_figure(parts.core, "level")) if parts.core is not None else None
        if parts.figure != "nu" or parts.programming or levels is None:
            continue
        for level, value in zip(np.atleast_1d(levels), np.atleast_1d(nu), strict=True):
            name = f"drift exponent nu at {float(level):.2f} uS (median of the level)"
            figures.append(KeyFigure(f"core {parts.core}", name, float(value), "", key))
    return figures


DERIVED = {"iv_sweep": _iv_sweep, "retention": _retention}
"""Per plan: key figures derived from the streams, beyond the summary's scalars."""

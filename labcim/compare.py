"""Comparison of any two runs: summary figure by figure, data key by data key.

A replay sets its new run against the recorded one (`labcim.replay`), but `compare` takes
any two runs of one plan: two measurements of one chip, a chip and its twin.  Data keys
are compared over the events both runs have; the board's link-health readings
(`labcim.plan_data.LINK_KEYS`) describe the wire and the host's clock, not the chip, so
they are compared but never required to agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labcim.hdf5 import Run
from labcim.hdf5.layout import INTERRUPTIONS_STREAM, SUMMARY_STREAM
from labcim.plan_data import is_link_key
from labcim.recorded import label


@dataclass(frozen=True)
class FigureDiff:
    """One summary key of two runs.

    ``a`` and ``b`` are the values (None where missing); for numbers ``diff`` is
    ``b - a`` and ``rel`` that over ``|a|`` (NaN if 0); for arrays of equal shape
    ``diff`` is the largest |difference|.
    """

    key: str
    a: Any
    b: Any
    identical: bool
    diff: float = float("nan")
    rel: float = float("nan")


@dataclass(frozen=True)
class DataDiff:
    """One data key of one stream: statistics of ``b - a`` over the events both have.

    ``events`` are the events of each run; ``mean``, ``std``, ``max_abs``, ``p01``,
    ``p99`` (1st / 99th percentile) are in the key's units, NaN for strings or
    different shapes.  ``link`` marks board link-health readings
    (`labcim.plan_data.LINK_KEYS`), which need not agree.
    """

    stream: str
    key: str
    events: tuple[int, int]
    identical: bool
    link: bool
    mean: float = float("nan")
    std: float = float("nan")
    max_abs: float = float("nan")
    p01: float = float("nan")
    p99: float = float("nan")


@dataclass(frozen=True)
class Comparison:
    """Run ``b`` set against run ``a`` (each named by `labcim.recorded.label`).

    ``names`` say what the runs are in the text (``("recorded", "replayed")`` for a
    replay); ``missing`` lists the streams and keys only one of them has.
    """

    a: str
    b: str
    figures: list[FigureDiff]
    data: list[DataDiff]
    missing: list[str]
    names: tuple[str, str] = ("first", "second")

    @property
    def identical(self) -> bool:
        """Every figure and data key (link health aside) equal, nothing missing."""
        return (
            not self.missing
            and all(f.identical for f in self.figures)
            and all(d.identical for d in self.data if not d.link)
        )


def compare(a: Run, b: Run, names: tuple[str, str] = ("first", "second")) -> Comparison:
    """Compare run ``b`` with run ``a``: summary figures, then every data key.

    Data keys are compared over the events both runs have (a write-verify may take a
    different number of iterations); keys or streams only one run has are listed in
    ``missing``.  The summary stream is compared as figures only; the interruptions
    (when the run was paused or suspended) are what happened to a run, not its data.
    """
    figures = compare_figures(a.summary or {}, b.summary or {})
    data, missing = [], []
    for name in sorted((set(a.streams) | set(b.streams)) - {SUMMARY_STREAM, INTERRUPTIONS_STREAM}):
        sa, sb = a.streams.get(name), b.streams.get(name)
        if sa is None or sb is None:
            missing.append(f"stream {name!r} only in the {names[sa is None]}")
            continue
        for key in sorted(set(sa) | set(sb)):
            if key not in sa or key not in sb:
                missing.append(f"{name}/{key} only in the {names[key in sb]}")
                continue
            data.append(compare_data(name, key, np.asarray(sa[key]), np.asarray(sb[key])))
    return Comparison(label(a), label(b), figures, data, missing, names)


def compare_figures(a: dict[str, Any], b: dict[str, Any]) -> list[FigureDiff]:
    """`FigureDiff` of every key of either summary."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x is None or y is None:
            out.append(FigureDiff(key, x, y, False))
            continue
        same = bool(np.array_equal(x, y, equal_nan=_is_float(x) and _is_float(y)))
        if np.ndim(x) == 0 and _is_number(x) and _is_number(y):
            diff = float(y) - float(x)
            rel = diff / abs(float(x)) if x else float("nan")
            out.append(FigureDiff(key, x, y, same, diff, rel))
        elif _is_number(x) and _is_number(y) and np.shape(x) == np.shape(y):
            d = np.abs(np.asarray(y, np.float64) - np.asarray(x, np.float64))
            out.append(FigureDiff(key, x, y, same, float(np.nanmax(d)) if d.size else 0.0))
        else:
            out.append(FigureDiff(key, x, y, same))
    return out


def compare_data(stream: str, key: str, a: np.ndarray, b: np.ndarray) -> DataDiff:
    """Difference statistics of one data key over the events both runs have."""
    n = min(len(a), len(b))
    x, y = a[:n], b[:n]
    events = (len(a), len(b))
    link = is_link_key(key)
    same = events[0] == events[1] and bool(
        np.array_equal(x, y, equal_nan=_is_float(x) and _is_float(y))
    )
    if not (_is_number(x) and _is_number(y)) or x.shape != y.shape or not x.size:
        return DataDiff(stream, key, events, same, link)
    d = y.astype(np.float64) - x.astype(np.float64)
    p01, p99 = np.nanpercentile(d, [1, 99])
    return DataDiff(
        stream,
        key,
        events,
        same,
        link,
        float(np.nanmean(d)),
        float(np.nanstd(d)),
        float(np.nanmax(np.abs(d))),
        float(p01),
        float(p99),
    )


def _is_number(value: Any) -> bool:
    kind = np.asarray(value).dtype.kind
    return kind in "biuf"


def _is_float(value: Any) -> bool:
    return np.asarray(value).dtype.kind == "f"


def format_comparison(comparison: Comparison, keys: Iterable[str] | None = None) -> str:
    """The comparison as text: one line per summary figure, then per data key.

    Parameters
    ----------
    keys : iterable of str, optional
        Only the summary figures and data keys containing one of these substrings.
    """
    wanted = list(keys or [])

    def shown(name: str) -> bool:
        return not wanted or any(w in name for w in wanted)

    c = comparison
    first, second = c.names
    verdict = "identical" if c.identical else "differs"
    lines = [f"{first} {c.a} vs {second} {c.b}: {verdict}"]
    lines.append(f"  {'summary figure':<40} {first:>12} {second:>12} {'diff':>11} rel")
    for f in c.figures:
        if not shown(f.key):
            continue
        if np.ndim(f.a) == 0 and _is_number(f.a) and f.b is not None:
            lines.append(
                f"  {f.key:<40} {_num(f.a):>12} {_num(f.b):>12} {_num(f.diff):>11} {_pct(f.rel)}"
            )
        else:
            detail = "identical" if f.identical else f"max |diff| {_num(f.diff)}"
            lines.append(f"  {f.key:<40} {'(array)' if f.b is not None else ''} {detail}")
    lines.append(
        f"  {'stream/data key':<40} {'events':>11} {'mean diff':>11} {'std':>10} "
        f"{'max |diff|':>10} {'p1..p99':>21}"
    )
    for d in c.data:
        if not shown(d.key):
            continue
        events = f"{d.events[0]}/{d.events[1]}"
        stats = (
            "identical"
            if d.identical
            else (
                f"{_num(d.mean):>11} {_num(d.std):>10} {_num(d.max_abs):>10} "
                f"{_num(d.p01):>10}..{_num(d.p99):<10}"
            )
        )
        note = "  (link health)" if d.link and not d.identical else ""
        lines.append(f"  {d.stream + '/' + d.key:<40} {events:>11} {stats}{note}")
    lines += [f"  missing: {m}" for m in c.missing]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "nan" if value is None else f"{float(value):.4g}"


def _pct(rel: float) -> str:
    return "" if np.isnan(rel) else f"{100 * rel:+.1f} %"

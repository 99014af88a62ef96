"""Shared shape of every benchmark: records of (name, value, unit, baseline, target).

Each ``benchmarks/bench_*.py`` module defines ``run(quick: bool = False) -> list[Record]``
and ends with ``if __name__ == "__main__": main(run)`` so it runs on its own as
``python -m benchmarks.bench_x [--quick] [--json FILE]``.  Machines are shared and noisy:
report ratios to a baseline measured in the same run, never bare absolute times.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Record:
    """One benchmark figure.

    Parameters
    ----------
    name : str
        What was measured, e.g. ``"mvm 1024x256x256 / numpy float32"``.
    value : float
        The figure.
    unit : str
        Its unit (``"x"`` for a ratio, ``"1/s"``, ``"MB/s"``, ``"s"`` ...).
    compared_with : str
        The baseline measured in the same run, or ``""``.
    target : str
        The goal from the issue, e.g. ``"<= 4"``, or ``""``.
    """

    name: str
    value: float
    unit: str
    compared_with: str = ""
    target: str = ""


def best_time(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time (s) of ``number`` calls of ``fn`` over ``repeat`` trials."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def format_table(records: Sequence[Record]) -> str:
    """Plain-text table of records, one line each."""
    rows = [("benchmark", "value", "unit", "compared with", "target")]
    rows += [(r.name, f"{r.value:.4g}", r.unit, r.compared_with, r.target) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main(run: Callable[[bool], list[Record]], argv: Sequence[str] | None = None) -> None:
    """Command-line wrapper used by every ``bench_*.py`` module."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    args = parser.parse_args(argv)
    records = run(args.quick)
    print(format_table(records))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in records], fh, indent=1)

"""How the benchmarks time, what they report, and the JSON and tables they write.

One module on purpose: timing, records, the run of every benchmark, JSON and tables move
as a unit.  Each ``benchmarks/bench_*.py`` module defines
``run(quick: bool = False) -> list[Record]`` and ends with
``if __name__ == "__main__": main(run)``, so it also runs on its own as
``python -m benchmarks.bench_x [--quick] [--threads N] [--json FILE]``.

The machine is shared and its load changes by the minute, so a figure is never one bare
time: the measured path and its baseline (the same work without the framework, or the
floor the target names) run alternately in one loop, ``A B``, ``B A``, ``A B`` ... (the
order flips so that neither side always runs second under a load that builds up), and a
record is the median of the per-repeat figures with their smallest and largest.  BLAS
(numpy's matmul) is limited to a stated number of threads with threadpoolctl: with two
cores and a loaded machine, two BLAS threads make a 256 x 256 float32 matmul batch 10x
slower than one, so the count is part of every record.  numpy's huge-page advice for
its large arrays is off unless asked for (`huge_page_advice`; the header says which):
on this kernel it made the 64-core TDP spend more time in page faults than in its work.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from labcim.output_files import write_file

DEFAULT_THREADS = 1
"""BLAS threads of every benchmark unless told otherwise (``--threads``)."""

QUICK_NOTE = (
    "--quick: smaller sizes and fewer repeats; the figures are not comparable with\n"
    "the targets, which are for the full benchmark (labcim bench without --quick)."
)

Trial = Callable[[], float]
"""One timed repeat of one side: does its own untimed set-up, returns seconds."""


@dataclass(frozen=True)
class Record:
    """One benchmark figure.

    Parameters
    ----------
    name : str
        What was measured, e.g. ``"mvm 1024x256 @ 256x256, all non-idealities"``.
    value : float
        The figure: the median over ``repeats`` for a timed figure.
    unit : str
        Its unit (``"x"`` for a ratio, ``"1/s"``, ``"MB/s"``, ``"s"`` ...).
    compared_with : str
        The baseline measured in the same run (and its median time), or ``""``.
    target : str
        The goal from the issue, e.g. ``"<= 3"``, or ``""``.
    low, high : float or None
        Smallest and largest figure over the repeats (``None``: not a timed figure).
    repeats : int
        Interleaved repeats the median is taken over (1 for a count or an error).
    threads : int or None
        BLAS threads in force while it was measured (``None``: no BLAS found).
    load : tuple of float or None
        The machine's 1-minute load average before and after the measurement.
    """

    name: str
    value: float
    unit: str
    compared_with: str = ""
    target: str = ""
    low: float | None = None
    high: float | None = None
    repeats: int = 1
    threads: int | None = None
    load: tuple[float, float] | None = None

    @classmethod
    def of(
        cls,
        name: str,
        figures: Sequence[float],
        unit: str,
        timings: Timings,
        compared_with: str = "",
        target: str = "",
    ) -> Record:
        """The record of per-repeat ``figures`` measured in ``timings``: median and range."""
        a = np.asarray(figures, dtype=float)
        return cls(
            name,
            float(np.median(a)),
            unit,
            compared_with,
            target,
            float(a.min()),
            float(a.max()),
            len(a),
            timings.threads,
            timings.load,
        )


@dataclass(frozen=True)
class Timings:
    """Seconds of each side of an interleaved measurement, one entry per repeat."""

    seconds: dict[str, np.ndarray]
    threads: int | None
    load: tuple[float, float]

    def median(self, side: str) -> float:
        """Median seconds of ``side``."""
        return float(np.median(self.seconds[side]))

    def ratio(
        self, name: str, side: str, baseline: str, compared_with: str, target: str = ""
    ) -> Record:
        """Record of the time ratio ``side / baseline``, repeat by repeat."""
        return Record.of(
            name, self.seconds[side] / self.seconds[baseline], "x", self, compared_with, target
        )

    def duration(self, name: str, side: str, target: str = "") -> Record:
        """Record of the seconds of ``side``."""
        return Record.of(name, self.seconds[side], "s", self, "", target)

    def rate(
        self, name: str, side: str, amount: float, unit: str, compared_with: str = ""
    ) -> Record:
        """Record of ``amount`` per second of ``side`` (vectors/s, MB/s ...), per repeat."""
        return Record.of(name, amount / self.seconds[side], unit, self, compared_with)

    def plain(self, name: str, value: float, unit: str, target: str = "") -> Record:
        """Record of a figure that is not timed (a count, an error), in this measurement."""
        return Record(name, value, unit, "", target, threads=self.threads, load=self.load)


def timed(fn: Callable[[], object], number: int = 1) -> Trial:
    """A trial timing ``number`` calls of ``fn``; it returns seconds per call."""

    def trial() -> float:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number

    return trial


def interleave(sides: Mapping[str, Trial], repeats: int) -> Timings:
    """Run every side's trial once per repeat, in alternating order.

    Repeat 0 runs the sides in the given order, repeat 1 in reverse, and so on
    (``A B, B A, A B`` for two sides), so a load that rises or falls during the loop
    weighs on both sides alike.

    Parameters
    ----------
    sides : mapping of str to callable
        Name -> trial (see `timed`, or a function that sets up untimed and returns the
        seconds of its timed part).
    repeats : int
        Repeats, >= 1.

    Returns
    -------
    Timings
        Per side the seconds of each repeat (in repeat order), the most BLAS threads in
        force after any trial, and the 1-minute load average before and after.
    """
    if repeats < 1:
        raise ValueError(f"repeats = {repeats} must be >= 1")
    names = list(sides)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    threads: set[int | None] = set()
    before = os.getloadavg()[0]
    for i in range(repeats):
        for n in names if i % 2 == 0 else names[::-1]:
            if _requested:  # also for a library a trial loaded
                threadpool_limits(limits=_requested[-1], user_api="blas")
            seconds[n].append(float(sides[n]()))
            threads.add(blas_threads())  # one loaded during the trial ran with its default
    after = os.getloadavg()[0]
    most = max((t for t in threads if t is not None), default=None)
    return Timings({n: np.array(s) for n, s in seconds.items()}, most, (before, after))


def blas_threads() -> int | None:
    """The most threads of any BLAS library loaded (numpy's, scipy's ...) now, as
    threadpoolctl reports them; ``None`` if it finds none."""
    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


_requested: list[int] = []
"""BLAS thread counts asked for by the `using_blas_threads` blocks now open, innermost last."""


@contextlib.contextmanager
def using_blas_threads(threads: int) -> Iterator[None]:
    """Limit BLAS to ``threads`` threads inside the block (threadpoolctl).

    threadpoolctl limits the libraries loaded when it is called; one loaded later (e.g.
    scipy's own OpenBLAS, imported by scikit-learn inside a benchmark) starts with all
    cores, so `interleave` applies the innermost count again before every trial, and
    reports the most threads seen after any (a library loaded during a trial ran it
    with its default).
    """
    if threads < 1:
        raise ValueError(f"threads = {threads} must be >= 1")
    _requested.append(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        _requested.pop()
        if _requested:  # the enclosing count, also for libraries loaded inside the block
            threadpool_limits(limits=_requested[-1], user_api="blas")


@contextlib.contextmanager
def huge_page_advice(on: bool) -> Iterator[None]:
    """numpy's ``madvise(MADV_HUGEPAGE)`` for its arrays of 4 MiB or more, on or off
    inside the block.

    Where the kernel compacts memory at the page fault to honour that advice
    (transparent huge pages with ``defrag`` = ``madvise``, memory fragmented by a long
    uptime), every first touch of a fresh large array costs 0.2-0.6 ms per fault in
    system time: on the build machine the 64-core TDP's direct side took 40-47 s with
    the advice and 18.6 s without, 27-29 s of system time against 4 s
    (docs/performance.md item 18).  This is numpy's own switch, the one its
    ``NUMPY_MADVISE_HUGEPAGE=0`` environment variable sets at import.
    """
    if _set_madvise_hugepage is None:  # a numpy without the switch: as it is
        yield
        return
    before = _set_madvise_hugepage(on)
    try:
        yield
    finally:
        _set_madvise_hugepage(before)


def huge_page_advice_on() -> bool | None:
    """Whether numpy gives its large arrays the huge-page advice now (``None``: unknown)."""
    if _set_madvise_hugepage is None:
        return None
    now = _set_madvise_hugepage(True)
    _set_madvise_hugepage(now)
    return bool(now)


try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # numpy 1.x keeps it in numpy.core
    try:
        from numpy.core.multiarray import _set_madvise_hugepage
    except ImportError:
        _set_madvise_hugepage = None


def header(threads: int, quick: bool, load: tuple[float, float, float]) -> dict[str, Any]:
    """What a reader of the figures needs to know about the run and the machine.

    ``load`` is `os.getloadavg` taken before the benchmarks; the one after is taken now.
    """
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": _processor(),
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        },
        "python": platform.python_version(),
        "numpy": np.__version__,
        "labcim_commit": _commit(),
        "blas": [
            {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for p in threadpool_info()
            if p["user_api"] == "blas"
        ],
        "threads": threads,
        "huge_page_advice": huge_page_advice_on(),
        "quick": quick,
        "load_before": list(load),
        "load_after": list(os.getloadavg()),
    }


HEADER_KEYS = {"date", "machine", "python", "numpy", "blas", "threads", "load_before", "load_after"}
"""What every header holds (`header`); `read_json` checks them."""


def _processor() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def _commit() -> str | None:
    """The git commit of the measured code, if it runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def available() -> list[str]:
    """Names of the benchmarks (``bench_hdf5.py`` -> ``"hdf5"``), sorted."""
    here = [str(Path(__file__).parent)]
    return sorted(
        m.name.removeprefix("bench_") for m in pkgutil.iter_modules(here) if m.name[:6] == "bench_"
    )


def run_benchmarks(
    names: Sequence[str],
    quick: bool,
    threads: int = DEFAULT_THREADS,
    on_error: Callable[[str, Exception], None] | None = None,
    progress: Callable[[Sequence[str]], Iterator[str]] = iter,
    huge_pages: bool = False,
) -> tuple[dict[str, Any], list[Record], list[str]]:
    """Run the named benchmarks under ``threads`` BLAS threads, with numpy's huge-page
    advice as ``huge_pages`` says (`huge_page_advice`).

    A benchmark that raises is reported to ``on_error`` and the others still run.  With
    ``quick`` every target is marked as not comparable.

    Returns
    -------
    header : dict
        See `header`.
    records : list of Record
    failed : list of str
        Names of the benchmarks that raised.
    """
    load = os.getloadavg()
    records: list[Record] = []
    failed = []
    with using_blas_threads(threads), huge_page_advice(huge_pages):
        for name in progress(names):
            try:
                module = importlib.import_module(f"{__package__}.bench_{name}")
                records += module.run(quick)
            except Exception as exc:
                failed.append(name)
                if on_error is None:
                    raise
                on_error(name, exc)
        head = header(threads, quick, load)  # inside: the settings in force
    return head, mark_quick(records) if quick else records, failed


def mark_quick(records: Sequence[Record]) -> list[Record]:
    """The records with every target marked as not comparable (a ``--quick`` run).

    Smaller sizes and fewer repeats change the ratios: a target met or missed there says
    nothing about the full benchmark.
    """
    return [
        replace(r, target=f"({r.target}: not comparable, --quick)") if r.target else r
        for r in records
    ]


def write_json(path: str | Path, head: Mapping[str, Any], records: Sequence[Record]) -> None:
    """Write ``{"header": ..., "records": [...]}`` (through a temporary name: a crash
    leaves the earlier run's file or this one, never half of it)."""
    data = {"header": dict(head), "records": [asdict(r) for r in records]}
    text = json.dumps(data, indent=1) + "\n"
    write_file(path, lambda temporary: temporary.write_text(text), _bench_json, "bench file")


def _bench_json(path: Path) -> bool:
    try:
        read_json(path)
    except ValueError:
        return False
    return True


def check_json_target(path: str | Path) -> None:
    """Refuse a ``--json`` path that `write_json` must not replace, before any run.

    A missing file, or one that `read_json` reads (an earlier run's), may be written;
    anything else there (another program's file, a directory) is not labcim's to replace.

    Raises
    ------
    ValueError
        Naming the path and why, in one line.
    """
    target = Path(path)
    folder = target.absolute().parent
    if not folder.is_dir():  # found now, not after the benchmarks' minutes
        raise ValueError(f"--json {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--json {path}: the folder {folder} is not writable")
    if not target.exists():
        return
    if not target.is_file():
        raise ValueError(f"--json {path}: not a file")
    try:
        read_json(target)
    except ValueError:
        raise ValueError(
            f"--json {path}: the file there is not a labcim bench --json file; "
            "it is left as it is (give a new path)"
        ) from None


def read_json(path: str | Path) -> tuple[dict[str, Any], list[Record]]:
    """Read what `write_json` wrote.

    Raises
    ------
    ValueError
        If the file is not such a JSON file (naming what is missing).
    """
    try:
        data = json.loads(Path(path).read_text())
        head, rows = data["header"], data["records"]
        missing = HEADER_KEYS - set(head)
        if missing:
            raise KeyError(f"header without {', '.join(sorted(missing))}")
        known = {f.name for f in fields(Record)}
        records = []
        for row in rows:
            if row.get("load") is not None:
                row["load"] = tuple(row["load"])
            records.append(Record(**{k: v for k, v in row.items() if k in known}))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a labcim bench --json file ({exc})") from None
    return head, records


def _number(x: float) -> str:
    """Three significant digits, a short exponent: ``0.912``, ``1.5e5``."""
    mantissa, e, exponent = f"{x:.3g}".partition("e")
    return mantissa + (f"e{int(exponent)}" if e else "")


def _spread(r: Record) -> str:
    if r.low is None or r.high is None or r.repeats < 2:
        return ""
    return f"{_number(r.low)}-{_number(r.high)}"


def format_table(records: Sequence[Record]) -> str:
    """Plain-text table of records, one line each (for the terminal)."""
    rows = [("benchmark", "value", "min-max", "unit", "compared with", "target", "thr", "n")]
    rows += [
        (
            r.name,
            _number(r.value),
            _spread(r),
            r.unit,
            r.compared_with,
            r.target,
            "" if r.threads is None else str(r.threads),
            str(r.repeats),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def markdown_table(head: Mapping[str, Any], records: Sequence[Record]) -> str:
    """The README's table: a line on the run and machine, then one row per record."""
    blas = ", ".join(f"{b['internal_api']} {b['version']}" for b in head["blas"]) or "no BLAS"
    m = head["machine"]
    before, after = head["load_before"], head["load_after"]
    lines = [
        f"{head['date'][:10]}, {m['cpus']} CPUs ({m['processor']}), {m['memory_gib']} GiB, "
        f"Python {head['python']}, numpy {head['numpy']}, {blas}; BLAS threads "
        f"{head['threads']} unless the row says"
        + {True: "; numpy huge-page advice on", False: "; numpy huge-page advice off"}.get(
            head.get("huge_page_advice"), ""
        )
        + "; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.1f}' for x in before)} before and "
        f"{', '.join(f'{x:.1f}' for x in after)} after"
        + (f"; code {head['labcim_commit']}" if head.get("labcim_commit") else "")
        + (". --quick: not comparable with the targets." if head.get("quick") else "."),
        "",
        "| benchmark | median | min-max | compared with | target | BLAS threads | repeats |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        unit = "" if not r.unit else r.unit if r.unit == "x" else f" {r.unit}"
        spread = _spread(r)
        lines.append(
            f"| {r.name} | {_number(r.value)}{unit} | {spread + unit if spread else ''} | "
            f"{r.compared_with} | {r.target} | {'' if r.threads is None else r.threads} | "
            f"{r.repeats} |"
        )
    return "\n".join(lines)


def main(run: Callable[[bool], list[Record]], argv: Sequence[str] | None = None) -> None:
    """Command-line wrapper used by every ``bench_*.py`` module."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="BLAS threads")
    parser.add_argument("--json", metavar="FILE", help="also write the records as JSON")
    args = parser.parse_args(argv)
    if args.json:
        try:
            check_json_target(args.json)
        except ValueError as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    load = os.getloadavg()
    with using_blas_threads(args.threads), huge_page_advice(False):
        records = run(args.quick)
        head = header(args.threads, args.quick, load)
    if args.quick:
        records = mark_quick(records)
        print(QUICK_NOTE)
    print(format_table(records))
    if args.json:
        write_json(args.json, head, records)

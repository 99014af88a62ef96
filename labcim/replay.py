"""Replay a recorded run: rebuild its plan call from the file, run it, compare the runs.

A run holds everything needed to re-run it (docs/replay.md): ``plan_name``,
``plan_args`` (arrays as datasets), ``board_identity`` and, on a simulated chip,
``board_identity.sim_chip`` (what its IDENTIFY reply said about the chip,
`labcim.twin.chips`).  `rebuild_call` turns a run back into a plan call, naming whatever
is missing; `labcim.twin.chips.SimChips` gives the simulated chip to replay it on;
`compare` sets a replayed run against the recorded one, key figure by key figure and
data key by data key; `replay` does all of it for the runs of a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labcim.connection import connect
from labcim.engine import run_engine, run_plan
from labcim.hdf5 import Run, Runs, open_runs
from labcim.hdf5.layout import (
    FORMAT,
    FORMAT_ATTR,
    INDEX_NAME,
    RUN_FILE,
    RUNS_DIR_SUFFIX,
    SUMMARY_STREAM,
    Location,
)
from labcim.hdf5.opening import DamagedFileError, open_readable
from labcim.plan_args import ArgumentError, PlanSignature
from labcim.registry import UnknownPlanError, get_plan
from labcim.twin.chips import NoSimulatedChipError, SimChips, chip_like, matches
from labcim.twin.sim_url import connect_chip

LINK_KEYS = (
    "frames_sent",
    "frames_received",
    "retries",
    "bad_frames",
    "timeouts",
    "stale_replies",
    "last_rtt",
    "mean_rtt",
    "retry_fraction",
)
"""Link-health readings of the board (``board_fpga_<name>``): they describe the wire and
the host's clock, not the chip, so they are compared but never required to agree."""


class ReplayError(ValueError):
    """A run that cannot be replayed; the message names the run and what is missing."""


@dataclass
class PlanCall:
    """A recorded plan call, ready to run again: ``plan(board, **arguments)``.

    Attributes
    ----------
    run : Run
        The recorded run.
    plan : callable
        The plan registered under the recorded name.
    arguments : dict
        The recorded arguments, checked against the plan's signature.
    """

    run: Run
    plan: Callable[..., Any]
    arguments: dict[str, Any]

    @property
    def label(self) -> str:
        """``run 3 (tdp_program, ab12cd34)``."""
        return label(self.run)

    @property
    def identity(self) -> dict[str, Any] | None:
        """The recorded board identity, if any."""
        return self.run.metadata.get("board_identity")

    @property
    def sim_record(self) -> dict[str, Any] | None:
        """What the recorded board's IDENTIFY said about its simulated chip, if it was
        one (`labcim.twin.chips`)."""
        return (self.identity or {}).get("sim_chip")


def label(run: Run) -> str:
    """How messages name a run: number, plan and uid prefix."""
    return f"run {run.number} ({run.plan_name or 'no plan'}, {run.uid[:8]})"


def open_recorded(path: str | Path) -> Runs:
    """The runs at ``path`` (index file, directory or run file), refusing foreign files.

    Raises
    ------
    ReplayError
        Nothing there, a file another program wrote, or a location without runs.
    """
    path = Path(path)
    if not path.exists():
        raise ReplayError(f"{path}: no such file or directory")
    if path.is_file():
        _check_labcim_file(path)
    try:
        runs = open_runs(results_location(path))  # skips damaged run files, warning
    except DamagedFileError as exc:  # the one run file named is damaged
        raise ReplayError(str(exc)) from None
    if not runs:
        raise ReplayError(f"{path}: no runs recorded there")
    return runs


def _check_labcim_file(path: Path) -> None:
    """Raise ReplayError unless ``path`` is a labcim run file or an index with its runs."""
    try:
        with open_readable(path) as file:
            is_run = file.attrs.get(FORMAT_ATTR) == FORMAT
    except DamagedFileError as exc:
        raise ReplayError(f"{exc}, so not labcim results") from None
    if RUN_FILE.fullmatch(path.name) and not is_run:
        raise ReplayError(f"{path}: not a labcim run file (no {FORMAT_ATTR!r} attribute)")
    if not is_run and not Location.from_path(results_location(path)).run_dir.is_dir():
        raise ReplayError(
            f"{path}: not labcim results: neither a run file (no {FORMAT_ATTR!r} "
            f"attribute) nor an index with its runs in {path.name}{RUNS_DIR_SUFFIX}/ "
            "(written by another program?)"
        )


def results_location(path: str | Path) -> Path:
    """The location (as given to `labcim.HDF5Writer`) that holds the runs at ``path``.

    Replays are written there, next to the runs they replay.
    """
    path = Path(path)
    if path.name == INDEX_NAME and Location.from_path(path).run_dir == path.parent:
        return path.parent  # the index of a directory location
    if not RUN_FILE.fullmatch(path.name):
        return path
    run_dir = path.parent
    index = run_dir.with_name(run_dir.name.removesuffix(RUNS_DIR_SUFFIX))
    if run_dir.name.endswith(RUNS_DIR_SUFFIX) and index.is_file():
        return index
    return run_dir


def select_runs(runs: Runs, ids: Sequence[str] | None) -> list[Run]:
    """The runs named by ``ids`` (run numbers or uid prefixes), or all of them.

    Raises
    ------
    ReplayError
        An id that names no run, or more than one.
    """
    if not ids:
        return list(runs)
    chosen = []
    for text in ids:
        found = [r for r in runs if str(r.number) == text]  # a number first, then a uid
        found = found or [r for r in runs if r.uid.startswith(text)]
        if len(found) != 1:
            numbers = ", ".join(str(r.number) for r in runs)
            raise ReplayError(
                f"--run {text}: names {len(found)} runs; give a run number ({numbers}) "
                "or a unique uid prefix"
            )
        chosen.append(found[0])
    return chosen


def rebuild_call(run: Run) -> PlanCall:
    """The plan call that recorded ``run``, from the file alone.

    Raises
    ------
    ReplayError
        Naming the run and what is missing: no ``plan_name`` (not recorded by a plan),
        a plan no longer registered (listing those that are), a plan taking no board,
        recorded arguments missing (each named) or no longer accepted by the plan.
    """
    where = label(run)
    name = run.plan_name
    if not name:
        raise ReplayError(f"{where}: the start document has no 'plan_name': not a plan's run")
    if "plan_args" not in run.start:
        raise ReplayError(f"{where}: the start document has no 'plan_args' to call {name} with")
    try:
        plan = get_plan(name)
        signature = PlanSignature(name, plan)
        arguments = signature.bind(run.plan_args, run.path.parent, where="plan_args.")
    except UnknownPlanError as exc:
        raise ReplayError(f"{where}: the plan no longer exists: {exc}") from None
    except TypeError as exc:
        raise ReplayError(f"{where}: {exc}") from None
    except ArgumentError as exc:
        lines = "\n".join(f"  {e}" for e in exc.errors)
        raise ReplayError(
            f"{where}: the recorded arguments do not fit {signature}:\n{lines}"
        ) from None
    return PlanCall(run, plan, arguments)


@dataclass
class Replayed:
    """One replayed run.

    Attributes
    ----------
    call : PlanCall
        The recorded call that was run again.
    run : Run
        The new run (``metadata["replay_of"]`` names the recorded one).
    chip : str
        What it ran on.
    exact : bool
        The chip was in the very state the recorded run found it in (a simulated chip
        rebuilt from the record): the data must then be identical.
    comparison : Comparison
        Replayed vs recorded.
    """

    call: PlanCall
    run: Run
    chip: str
    exact: bool
    comparison: Comparison


def replay(
    path: str | Path,
    ids: Sequence[str] | None = None,
    chip: str | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> list[Replayed]:
    """Run the recorded runs at ``path`` again and compare each with its record.

    Every selected run is rebuilt (`rebuild_call`) before the first one runs, so a run
    that cannot be replayed stops the replay before anything is written.

    Parameters
    ----------
    path : str or Path
        Results file, directory or run file.
    ids : sequence of str, optional
        Run numbers or uid prefixes (`select_runs`); default all runs, in order.
    chip : str, optional
        Chip URL to replay on (``labcim.connect``); default the simulated chip rebuilt
        from each run (`labcim.twin.chips.SimChips`), or for a run recorded on real
        hardware the preset of its technology with its geometry
        (`labcim.twin.chips.chip_like`).
    out : str or Path, optional
        Where the new runs go; default next to the recorded ones (`results_location`).
    progress : bool
        Progress bars.

    Raises
    ------
    ReplayError
        A file that is not labcim results, an unknown run id, a run that cannot be
        rebuilt.
    """
    runs = open_recorded(path)
    calls = [rebuild_call(run) for run in select_runs(runs, ids)]
    location = Path(out) if out is not None else results_location(path)
    RE = run_engine(location, progress=progress)
    chips = SimChips()
    done = []
    for call in calls:
        board, described, exact = _board_for(call, chip, chips)
        md = {
            "replay_of": {
                "uid": call.run.uid,
                "run_file": call.run.path.name,
                "plan_name": call.run.plan_name,
                "chip": described,
                "exact": exact,
            }
        }
        try:
            uids = run_plan(RE, call.plan(board, **call.arguments), md)
        finally:
            board.close()
        new = open_runs(location)[uids[0]]
        done.append(Replayed(call, new, described, exact, compare(call.run, new)))
    return done


def _board_for(call: PlanCall, url: str | None, chips: SimChips) -> tuple[Any, str, bool]:
    """Board to replay ``call`` on, how it is described, and whether the replay is exact."""
    record = call.sim_record
    if url is not None:
        board = connect(url)
        board.simulator.trigger().wait(board.status_timeout)  # IDENTIFY, through the wire
        state = board.simulator.record.get()
        exact = bool(record and state) and matches(json.loads(state), record)
        return board, url, exact
    if record is not None:
        chip, exact = chips.chip_for(record)
        spec = record["spec"]
        state = "as recorded" if exact else f"fresh, clock moved to {record['clock']:.6g} s"
        described = f"simulated {spec['preset']} seed {spec['seed']} rebuilt from the run ({state})"
        return connect_chip(chip), described, exact
    if call.identity is None:
        raise ReplayError(f"{call.label}: the run records no board identity; give --chip URL")
    try:
        chip = chip_like(call.identity)
    except NoSimulatedChipError as exc:
        raise ReplayError(f"{call.label}: {exc}") from None
    described = f"simulated {chip.spec.preset} like the recorded {call.identity.get('chip')}"
    return connect_chip(chip), described, False


# -- comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureDiff:
    """One summary key: recorded vs replayed.

    ``recorded`` and ``replayed`` are the values (None where missing); for numbers
    ``diff`` is replayed - recorded and ``rel`` that over |recorded| (NaN if 0); for
    arrays of equal shape ``diff`` is the largest |difference|.
    """

    key: str
    recorded: Any
    replayed: Any
    identical: bool
    diff: float = float("nan")
    rel: float = float("nan")


@dataclass(frozen=True)
class DataDiff:
    """One data key of one stream: statistics of replayed - recorded over common events.

    ``mean``, ``std``, ``max_abs``, ``p01``, ``p99`` (1st / 99th percentile) are in the
    key's units; NaN for strings or different shapes.  ``link`` marks board link-health
    readings (`LINK_KEYS`), which need not agree.
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
    """A replayed run set against the recorded one."""

    recorded: str
    replayed: str
    figures: list[FigureDiff]
    data: list[DataDiff]
    missing: list[str]

    @property
    def identical(self) -> bool:
        """Every figure and data key (link health aside) equal, nothing missing."""
        return (
            not self.missing
            and all(f.identical for f in self.figures)
            and all(d.identical for d in self.data if not d.link)
        )


def compare(recorded: Run, replayed: Run) -> Comparison:
    """Compare ``replayed`` with ``recorded``: summary figures, then every data key.

    Data keys are compared over the events both runs have (a write-verify may take a
    different number of iterations); keys or streams only one run has are listed in
    ``missing``.  The summary stream is compared as figures only.
    """
    figures = compare_figures(recorded.summary or {}, replayed.summary or {})
    data, missing = [], []
    for name in sorted((set(recorded.streams) | set(replayed.streams)) - {SUMMARY_STREAM}):
        a, b = recorded.streams.get(name), replayed.streams.get(name)
        if a is None or b is None:
            missing.append(f"stream {name!r} only in the {'replayed' if a is None else 'recorded'}")
            continue
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                missing.append(f"{name}/{key} only in the {'replayed' if key in b else 'recorded'}")
                continue
            data.append(compare_data(name, key, np.asarray(a[key]), np.asarray(b[key])))
    return Comparison(label(recorded), label(replayed), figures, data, missing)


def compare_figures(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[FigureDiff]:
    """`FigureDiff` of every key of either summary."""
    out = []
    for key in sorted(set(recorded) | set(replayed)):
        a, b = recorded.get(key), replayed.get(key)
        if a is None or b is None:
            out.append(FigureDiff(key, a, b, False))
            continue
        same = bool(np.array_equal(a, b, equal_nan=_is_float(a) and _is_float(b)))
        if np.ndim(a) == 0 and _is_number(a) and _is_number(b):
            diff = float(b) - float(a)
            rel = diff / abs(float(a)) if a else float("nan")
            out.append(FigureDiff(key, a, b, same, diff, rel))
        elif _is_number(a) and _is_number(b) and np.shape(a) == np.shape(b):
            d = np.abs(np.asarray(b, np.float64) - np.asarray(a, np.float64))
            out.append(FigureDiff(key, a, b, same, float(np.nanmax(d)) if d.size else 0.0))
        else:
            out.append(FigureDiff(key, a, b, same))
    return out


def compare_data(stream: str, key: str, recorded: np.ndarray, replayed: np.ndarray) -> DataDiff:
    """Difference statistics of one data key over the events both runs have."""
    n = min(len(recorded), len(replayed))
    a, b = recorded[:n], replayed[:n]
    events = (len(recorded), len(replayed))
    link = any(key.endswith("_" + name) for name in LINK_KEYS)
    same = events[0] == events[1] and bool(
        np.array_equal(a, b, equal_nan=_is_float(a) and _is_float(b))
    )
    if not (_is_number(a) and _is_number(b)) or a.shape != b.shape or not a.size:
        return DataDiff(stream, key, events, same, link)
    d = b.astype(np.float64) - a.astype(np.float64)
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
    verdict = "identical" if c.identical else "differs"
    lines = [f"{c.recorded} -> replay {c.replayed}: {verdict}"]
    lines.append(f"  {'summary figure':<40} {'recorded':>12} {'replayed':>12} {'diff':>11} rel")
    for f in c.figures:
        if not shown(f.key):
            continue
        if np.ndim(f.recorded) == 0 and _is_number(f.recorded) and f.replayed is not None:
            lines.append(
                f"  {f.key:<40} {_num(f.recorded):>12} {_num(f.replayed):>12} "
                f"{_num(f.diff):>11} {_pct(f.rel)}"
            )
        else:
            detail = "identical" if f.identical else f"max |diff| {_num(f.diff)}"
            lines.append(f"  {f.key:<40} {'(array)' if f.replayed is not None else ''} {detail}")
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

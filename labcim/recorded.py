"""Recorded runs read back for use: found at a path, chosen by id, turned into plan calls.

What replay, comparison and the twin's calibration share: `open_recorded` gives the runs
at a path (refusing files another program wrote), `select_runs` the runs named by
number or uid prefix, `is_replay` tells a run that replay made from a measurement,
`rebuild_call` the plan call that recorded a run (from the file
alone: ``plan_name``, ``plan_args``, the plan registered under that name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labcim.hdf5 import Run, Runs, open_runs
from labcim.hdf5.layout import (
    FORMAT,
    FORMAT_ATTR,
    INDEX_NAME,
    RUN_FILE,
    RUNS_DIR_SUFFIX,
    Location,
    format_mismatch,
)
from labcim.hdf5.opening import DamagedFileError, open_readable
from labcim.plan_args import ArgumentError, PlanSignature
from labcim.registry import UnknownPlanError, get_plan


class RecordedRunError(ValueError):
    """Recorded runs that cannot be used: not labcim results, an unknown run id, a run
    whose plan call cannot be rebuilt (the message names the run and what is missing)."""


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
    RecordedRunError
        Nothing there, a file another program wrote, or a location without runs.
    """
    path = Path(path)
    if not path.exists():
        raise RecordedRunError(f"{path}: no such file or directory")
    if path.is_file():
        _check_labcim_file(path)
    try:
        runs = open_runs(results_location(path))  # skips damaged run files, warning
    except DamagedFileError as exc:  # the one run file named is damaged
        raise RecordedRunError(str(exc)) from None
    if not runs:
        raise RecordedRunError(f"{path}: no runs recorded there")
    return runs


def _check_labcim_file(path: Path) -> None:
    """Raise RecordedRunError unless ``path`` is a labcim run file or an index with its runs."""
    try:
        with open_readable(path) as file:
            mark = file.attrs.get(FORMAT_ATTR)
    except DamagedFileError as exc:
        raise RecordedRunError(f"{exc}, so not labcim results") from None
    is_run = mark == FORMAT
    if RUN_FILE.fullmatch(path.name) and not is_run:
        raise RecordedRunError(f"{path}: {format_mismatch(mark)}")
    if not is_run and not Location.from_path(results_location(path)).run_dir.is_dir():
        raise RecordedRunError(
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


REPLAY_OF = "replay_of"
"""Start-document key of a run made by `labcim.replay.replay`: what it replayed."""


def is_replay(run: Run) -> bool:
    """Whether ``run`` is a replay (``replay_of`` in its start document): the simulator's
    answer to a recorded run, not a measurement."""
    return REPLAY_OF in run.start


def select_runs(runs: Runs, ids: Sequence[str] | None) -> list[Run]:
    """The runs named by ``ids`` (run numbers or uid prefixes), or else every run that
    is not itself a replay (replaying a file twice then replays its records twice, not
    the first replays as well).

    Raises
    ------
    RecordedRunError
        An id that names no run, or more than one; no ``ids`` and only replays.
    """
    if not ids:
        recorded = [run for run in runs if not is_replay(run)]
        if runs and not recorded:
            raise RecordedRunError(
                "every run there is a replay; name the ones to replay again with --run"
            )
        return recorded
    chosen = []
    for text in ids:
        found = [r for r in runs if str(r.number) == text]  # a number first, then a uid
        found = found or [r for r in runs if r.uid.startswith(text)]
        if len(found) != 1:
            numbers = ", ".join(str(r.number) for r in runs)
            raise RecordedRunError(
                f"--run {text}: names {len(found)} runs; give a run number ({numbers}) "
                "or a unique uid prefix"
            )
        chosen.append(found[0])
    return chosen


def rebuild_call(run: Run) -> PlanCall:
    """The plan call that recorded ``run``, from the file alone.

    Raises
    ------
    RecordedRunError
        Naming the run and what is missing: no ``plan_name`` (not recorded by a plan),
        a plan no longer registered (listing those that are), a plan taking no board,
        recorded arguments missing (each named) or no longer accepted by the plan.
    """
    where = label(run)
    name = run.plan_name
    if not name:
        raise RecordedRunError(f"{where}: the start document has no 'plan_name': not a plan's run")
    if "plan_args" not in run.start:
        raise RecordedRunError(
            f"{where}: the start document has no 'plan_args' to call {name} with"
        )
    try:
        plan = get_plan(name)
        signature = PlanSignature(name, plan)
        arguments = signature.bind(run.plan_args, run.path.parent, where="plan_args.")
    except UnknownPlanError as exc:
        raise RecordedRunError(f"{where}: the plan no longer exists: {exc}") from None
    except TypeError as exc:
        raise RecordedRunError(f"{where}: {exc}") from None
    except ArgumentError as exc:
        lines = "\n".join(f"  {e}" for e in exc.errors)
        raise RecordedRunError(
            f"{where}: the recorded arguments do not fit {signature}:\n{lines}"
        ) from None
    return PlanCall(run, plan, arguments)

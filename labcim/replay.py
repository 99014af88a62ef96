"""Replay recorded runs: rebuild each plan call from the file, run it again, compare.

A run holds everything needed to re-run it (docs/replay.md): ``plan_name``,
``plan_args`` (arrays as datasets), ``board_identity`` and, on a simulated chip,
``board_identity.sim_chip`` (what its IDENTIFY reply said about the chip).
`labcim.recorded.rebuild_call` turns a run back into a plan call, naming whatever is
missing; `labcim.twin.chips.replay_board` chooses the board to run it on (by default the
simulated chip rebuilt from the record); `labcim.compare.compare` sets the new run
against the recorded one; `replay` does all of it for the runs of a file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labcim.compare import Comparison, compare
from labcim.engine import PlanAbortedError, run_engine, run_plan, stop_after_run
from labcim.hdf5 import Run, open_runs
from labcim.recorded import (
    REPLAY_OF,
    PlanCall,
    open_recorded,
    rebuild_call,
    results_location,
    select_runs,
)
from labcim.twin.chips import SimChips, replay_board


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
        The replayed run (``b``) against the recorded one (``a``).
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
    on_pause: Callable[[], bool] | None = None,
) -> list[Replayed]:
    """Run the recorded runs at ``path`` again and compare each with its record.

    Every selected run is rebuilt (`labcim.recorded.rebuild_call`) before the first one
    runs, so a run that cannot be replayed stops the replay before anything is written.

    Parameters
    ----------
    path : str or Path
        Results file, directory or run file.
    ids : sequence of str, optional
        Run numbers or uid prefixes (`labcim.recorded.select_runs`); default every
        run that is not a replay itself, in order.
    chip : str, optional
        Chip URL to replay on (``labcim.connect``); default the simulated chip rebuilt
        from each run (`labcim.twin.chips.SimChips`), or for a run recorded on real
        hardware the preset of its technology with its geometry
        (`labcim.twin.chips.chip_like`).
    out : str or Path, optional
        Where the new runs go; default next to the recorded ones
        (`labcim.recorded.results_location`).
    progress : bool
        Progress bars.
    on_pause : callable, optional
        Called when a replay pauses (Ctrl-C); True resumes it, False aborts
        (`labcim.engine.run_plan`).  Without it a pause aborts.

    Raises
    ------
    labcim.recorded.RecordedRunError
        A file that is not labcim results, an unknown run id, a run that cannot be
        rebuilt, a run without a board identity to replay on (and no ``chip``).
    labcim.hdf5.output.ForeignFileError
        ``out`` holds a file labcim did not write (checked before anything runs).
    labcim.engine.PlanAbortedError
        A replay was paused and then aborted (the replays before it are kept).
    """
    runs = open_recorded(path)
    calls = [rebuild_call(run) for run in select_runs(runs, ids)]
    location = Path(out) if out is not None else results_location(path)
    RE = run_engine(location, progress=progress)
    chips = SimChips()
    done = []
    for call in calls:
        board, described, exact = replay_board(call, chip, chips)
        md = {
            REPLAY_OF: {
                "uid": call.run.uid,
                "run_file": call.run.path.name,
                "plan_name": call.run.plan_name,
                "chip": described,
                "exact": exact,
            }
        }
        try:
            uids = run_plan(RE, call.plan(board, **call.arguments), md, on_pause)
        finally:
            board.close()
        new = open_runs(location)[uids[0]]
        comparison = compare(call.run, new, ("recorded", "replayed"))
        done.append(Replayed(call, new, described, exact, comparison))
        if stop_after_run(RE, on_pause) and len(done) < len(calls):
            raise PlanAbortedError(f"interrupted after the replay of run {call.run.number}")
    return done

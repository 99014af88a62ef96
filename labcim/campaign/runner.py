"""Running a campaign: one bluesky run per step, resumable from the results on disk.

What is done is read back from the HDF5 runs at the campaign's ``out`` location, never
from a separate state file: a step is done iff a run there carries its campaign id,
step key and argument digest and finished with exit status ``success``.  A killed
process leaves its step's run ``incomplete`` and a Ctrl-C leaves it ``abort``; both are
redone by a resumed campaign, and nothing that finished is run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from drivers.board import BoardError
from drivers.smu import SMUError
from labcim import suspenders
from labcim.campaign.lock import running_alone
from labcim.campaign.schema import Campaign, CampaignError, Step
from labcim.engine import (
    PlanAbortedError,
    connect_chip,
    connected,
    run_engine,
    run_plan,
    stop_after_run,
)
from labcim.hdf5 import open_runs
from labcim.hdf5.reader import Run

#: Errors of the instruments themselves: the campaign stops whatever its failure policy.
HARDWARE_FAULTS: tuple[type[Exception], ...] = (BoardError, SMUError)

StepStatus = Literal["success", "fail", "abort", "done"]


@dataclass(frozen=True)
class StepOutcome:
    """What became of one step.

    Attributes
    ----------
    status : str
        ``"success"``, ``"fail"``, ``"abort"`` (paused, then aborted), or ``"done"``
        (finished by an earlier invocation and skipped).
    uids : tuple of str
        The runs of the step (for ``"done"``, the earlier successful run).
    """

    step: Step
    status: StepStatus
    uids: tuple[str, ...] = ()
    error: str = ""
    seconds: float = 0.0

    def describe(self, total: int) -> str:
        """One log line: ``[3/16] 02-mvm...[cores=1] success (2.1 s)``."""
        line = f"[{self.step.index}/{total}] {self.step.key} {self.status} ({self.seconds:.1f} s)"
        return f"{line}: {self.error}" if self.error else line


@dataclass
class CampaignResult:
    """The outcome of every step reached, and why the campaign stopped early if it did."""

    campaign: Campaign
    outcomes: list[StepOutcome] = field(default_factory=list)
    stopped: str = ""
    interrupted: bool = False
    """The operator stopped the campaign between two steps (`labcim.engine.stop_after_run`)."""

    @property
    def aborted(self) -> bool:
        """The operator aborted a paused step, or stopped the campaign between steps."""
        return self.interrupted or any(o.status == "abort" for o in self.outcomes)

    @property
    def complete(self) -> bool:
        """Every step has a successful run."""
        done = sum(o.status in ("success", "done") for o in self.outcomes)
        return done == len(self.campaign.steps)


def campaign_runs(campaign: Campaign, locations: Sequence[str | Path] = ()) -> list[Run]:
    """The runs of this campaign (by id) already at its ``out`` location.

    ``locations``: look there instead (e.g. the results directories of stations).
    """
    runs = []
    for location in locations or (campaign.out,):
        try:
            runs += open_runs(location)
        except FileNotFoundError:
            continue
    return [run for run in runs if run.start.get("campaign_id") == campaign.id]


def finished_steps(campaign: Campaign, locations: Sequence[str | Path] = ()) -> dict[str, str]:
    """Step key -> uid of its successful run, for the steps that need not run again."""
    digests = {step.key: step.digest for step in campaign.steps}
    return {
        run.start["step_key"]: run.uid
        for run in campaign_runs(campaign, locations)
        if run.exit_status == "success"
        and digests.get(run.start.get("step_key")) == run.start.get("step_digest")
    }


def run_campaign(
    campaign: Campaign,
    *,
    resume: bool = False,
    connect: Callable[..., Any] = connect_chip,
    progress: bool = True,
    on_pause: Callable[[], bool] | None = None,
) -> CampaignResult:
    """Run the steps of ``campaign`` not finished yet, each as its own bluesky run.

    Parameters
    ----------
    campaign : Campaign
        From `load_campaign`.
    resume : bool
        Continue a campaign that already has runs at ``out``: skip its finished steps,
        redo the rest.  Without it such a campaign is refused, so that no step is ever
        run twice by mistake.
    connect : callable
        ``connect(chip, **chip_options)`` returning the board given to every plan
        (default `labcim.connect`; ``"none"`` gives ``None``).  Only called if a step
        is left to run; the board is closed at the end.
    progress : bool
        A progress bar over the steps, and bluesky's for waits within a step.
    on_pause : callable, optional
        Asked after a Ctrl-C paused a step: True resumes, False aborts the step and
        stops the campaign.  Without it a pause aborts.

    Returns
    -------
    CampaignResult
        One outcome per step reached; a line per step is also printed as it ends.

    Raises
    ------
    CampaignError
        If runs of the campaign are at ``out`` and ``resume`` is false, or another
        invocation of it is running (`labcim.campaign.lock`).
    """
    with running_alone(campaign):
        return _run_campaign(campaign, resume, connect, progress, on_pause)


def _run_campaign(
    campaign: Campaign,
    resume: bool,
    connect: Callable[..., Any],
    progress: bool,
    on_pause: Callable[[], bool] | None,
) -> CampaignResult:
    result = CampaignResult(campaign)
    if not resume and (earlier := campaign_runs(campaign)):
        raise CampaignError(
            campaign.path,
            [
                f"out: {campaign.out} already holds {len(earlier)} run(s) of campaign "
                f"{campaign.id!r}; resume it (--resume) or give the campaign a new id"
            ],
        )
    finished = finished_steps(campaign) if resume else {}
    todo = [step for step in campaign.steps if step.key not in finished]
    result.outcomes += [
        StepOutcome(step, "done", (finished[step.key],))
        for step in campaign.steps
        if step.key in finished
    ]
    if finished:
        done = f"{len(finished)} of {len(campaign.steps)} steps done"
        tqdm.write(f"resuming campaign {campaign.id}: {done}")
    if not todo:
        return result
    with (
        connected(connect, campaign.chip, **campaign.chip_options) as board,
        tqdm(
            total=len(campaign.steps),
            initial=len(finished),
            unit="step",
            # None: drawn on a terminal only; a redirected log gets the step lines alone
            disable=None if progress else True,
        ) as bar,
    ):
        RE = run_engine(campaign.out, progress=progress)  # after connecting: no empty folder
        suspenders.install(RE, board, campaign.suspend)
        for step in todo:
            bar.set_description(step.key)
            outcome, stop = _run_step(RE, campaign, step, board, on_pause)
            result.outcomes.append(outcome)
            bar.write(outcome.describe(len(campaign.steps)))
            bar.update()
            last = step is todo[-1]
            if not stop and not last and stop_after_run(RE, on_pause):  # Ctrl-C at its end
                result.interrupted = True
                stop = f"interrupted after {step.key}"
            if stop:
                result.stopped = stop
                break
    return result


def _run_step(
    RE: Any, campaign: Campaign, step: Step, board: Any, on_pause: Callable[[], bool] | None
) -> tuple[StepOutcome, str]:
    """Run one step; return its outcome and why the campaign must stop ("" to go on)."""
    started = time.monotonic()
    try:
        uids = run_plan(RE, step.plan(board, **step.args), campaign.step_metadata(step), on_pause)
    except PlanAbortedError as exc:
        seconds = time.monotonic() - started
        return StepOutcome(step, "abort", (), str(exc), seconds), f"{step.key} aborted"
    except Exception as exc:
        seconds = time.monotonic() - started
        outcome = StepOutcome(step, "fail", (), f"{type(exc).__name__}: {exc}", seconds)
        return outcome, _stop_reason(campaign, step, exc)
    seconds = time.monotonic() - started
    if not uids:  # nothing on disk would ever say the step is done
        error = "the plan opened no bluesky run; a campaign step must be one"
        outcome = StepOutcome(step, "fail", (), error, seconds)
        return outcome, _stop_reason(campaign, step, None)
    return StepOutcome(step, "success", tuple(uids), "", seconds), ""


def _stop_reason(campaign: Campaign, step: Step, exc: BaseException | None) -> str:
    cause: BaseException | None = exc
    while cause is not None:  # bluesky wraps device errors (FailedStatus ... from error)
        if isinstance(cause, HARDWARE_FAULTS):
            return f"hardware fault in {step.key}: {type(cause).__name__}: {cause}"
        if isinstance(cause, OSError):
            return f"I/O error in {step.key} (results may not be saved): {cause}"
        cause = cause.__cause__ or cause.__context__
    if campaign.on_failure == "stop":
        return f"{step.key} failed and on_failure is 'stop'"
    return ""

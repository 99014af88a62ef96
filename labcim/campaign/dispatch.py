"""Running a campaign over station queues: each step to a free station, watched to its end.

`dispatch_campaign` is the campaign runner for ``labcim campaign FILE --stations ...``.
Each expanded step becomes one bluesky-queueserver plan item (JSON arguments; the
step's metadata as the item's ``meta``, so its run carries the campaign id, step key
and digest like a run of `run_campaign`), sent to a free station, or the one the step
is pinned to (``station:`` in its entry).  A station runs one step of the campaign at
a time, so a station that dies holds at most one.  The dispatcher polls each busy
station's status and history through bluesky-queueserver-api; a station that stops
answering for ``lost_after`` s is dropped, and its step, unless a successful run of it
is already on disk, goes back to the front of the line for another station.

What is done is read from the runs in the stations' results directories, as for a
single-process campaign: ``--resume`` skips the steps with a successful run there.
Every dispatch and outcome is written to the campaign's `journal`.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from tqdm import tqdm

from labcim.campaign.journal import Journal, journal_path, read_journal
from labcim.campaign.lock import running_alone
from labcim.campaign.runner import CampaignResult, StepOutcome, campaign_runs, finished_steps
from labcim.campaign.schema import Campaign, CampaignError, Step
from labcim.stations.registry import Station

#: Item history exit status of a plan that ended well.
COMPLETED = "completed"


@dataclass
class _Slot:
    """One station as the dispatcher sees it."""

    station: Station
    api: Any  # short timeouts: status and history, so a dead station is noticed
    control: Any  # long timeouts: item_add validates the item (imports plans at first)
    heard: float
    step: Step | None = None
    item_uid: str = ""
    started: float = 0.0
    running: bool = False
    history: str = ""
    lost: str = ""
    log: list[str] = field(default_factory=list)


def json_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """A step's converted arguments as JSON for a queue item (arrays as nested lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, PurePath):
            return str(Path(value).resolve())
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return {name: plain(value) for name, value in args.items()}


def dispatch_campaign(
    campaign: Campaign,
    stations: Sequence[Station],
    *,
    resume: bool = False,
    progress: bool = True,
    poll: float = 0.2,
    lost_after: float = 10.0,
) -> CampaignResult:
    """Run the steps of ``campaign`` not finished yet on ``stations``' queues.

    Parameters
    ----------
    campaign : Campaign
        From `load_campaign`.
    stations : sequence of Station
        Where to run; each needs its results directory reachable from here.
    resume : bool
        As for `run_campaign`: without it, a campaign with runs in the stations'
        results is refused.
    progress : bool
        A progress bar over the steps.
    poll : float
        Seconds between two looks at the busy stations.
    lost_after : float
        Seconds without an answer after which a station counts as dead.

    Raises
    ------
    CampaignError
        Runs of the campaign exist and ``resume`` is false; a step pinned to a station
        not given; a station whose results directory is not reachable from here;
        another invocation of the campaign is running (`labcim.campaign.lock`).
    """
    with running_alone(campaign):
        return _dispatch(campaign, stations, resume, progress, poll, lost_after)


def _dispatch(
    campaign: Campaign,
    stations: Sequence[Station],
    resume: bool,
    progress: bool,
    poll: float,
    lost_after: float,
) -> CampaignResult:
    locations = _locations(campaign, stations)
    locations += _earlier_locations(campaign, locations)
    result = CampaignResult(campaign)
    if not resume and (earlier := campaign_runs(campaign, locations)):
        raise CampaignError(
            campaign.path,
            [
                f"stations: their results already hold {len(earlier)} run(s) of campaign "
                f"{campaign.id!r}; resume it (--resume) or give the campaign a new id"
            ],
        )
    finished = finished_steps(campaign, locations) if resume else {}
    result.outcomes += [
        StepOutcome(step, "done", (finished[step.key],))
        for step in campaign.steps
        if step.key in finished
    ]
    todo = deque(step for step in campaign.steps if step.key not in finished)
    if not todo:
        return result
    journal = Journal(journal_path(campaign))
    journal.write(
        "start", campaign=campaign.id, results={s.name: s.results for s in stations}, todo=len(todo)
    )
    short = min(2.0, lost_after / 3)
    slots = [
        _Slot(s, s.api(timeout=short), s.api(timeout=60.0), time.monotonic()) for s in stations
    ]
    bar = tqdm(total=len(campaign.steps), initial=len(finished), unit="step", disable=not progress)
    try:
        _run(campaign, slots, todo, result, journal, bar, poll, lost_after)
    except KeyboardInterrupt:
        result.stopped = "interrupted: steps already sent finish on their stations; --resume"
    finally:
        journal.write("end", stopped=result.stopped, complete=result.complete)
        journal.close()
        bar.close()
        for slot in slots:
            slot.api.close()
            slot.control.close()
    return result


def _locations(campaign: Campaign, stations: Sequence[Station]) -> list[Path]:
    names = {s.name for s in stations}
    errors = [
        f"steps: {step.key} is pinned to station {step.station!r}, not among "
        f"{', '.join(sorted(names))}"
        for step in campaign.steps
        if step.station and step.station not in names
    ]
    errors += [
        f"stations.{s.name}: its results directory {s.results!r} is not reachable from "
        "here (needed to know which steps are done)"
        for s in stations
        if not s.results or not Path(s.results).is_dir()
    ]
    if errors:
        raise CampaignError(campaign.path, errors)
    return [Path(s.results) for s in stations]


def _earlier_locations(campaign: Campaign, locations: Sequence[Path]) -> list[Path]:
    """Results directories of stations an earlier invocation used, not given now.

    A station that died last night still holds the runs of the steps it finished: a
    resume without it must not run them again.  Where those runs are is in the
    journal's ``start`` lines; whether a step is done is still read from the runs.
    """
    path = journal_path(campaign)
    if not path.exists():
        return []
    given = {p.resolve() for p in locations}
    found: list[Path] = []
    for entry in read_journal(path):
        for results in (entry.get("results") or {}).values() if entry["event"] == "start" else ():
            where = Path(results)
            if where.is_dir() and where.resolve() not in given | {p.resolve() for p in found}:
                found.append(where)
    return found


def _run(
    campaign: Campaign,
    slots: list[_Slot],
    todo: deque[Step],
    result: CampaignResult,
    journal: Journal,
    bar: Any,
    poll: float,
    lost_after: float,
) -> None:
    total = len(campaign.steps)

    def finish(outcome: StepOutcome, station: str) -> None:
        result.outcomes.append(outcome)
        bar.write(f"{outcome.describe(total)} on {station}")
        bar.update()
        if outcome.status == "fail" and campaign.on_failure == "stop" and not result.stopped:
            result.stopped = f"{outcome.step.key} failed and on_failure is 'stop'"

    while True:
        alive = [s for s in slots if not s.lost]
        for slot in alive:
            if slot.step is None and not result.stopped:
                step = _next_step(todo, slot.station.name)
                if step is not None:
                    outcome = _submit(campaign, slot, step, journal)
                    if outcome is not None:
                        finish(outcome, slot.station.name)
        for slot in alive:
            if slot.step is not None and not slot.lost:
                outcome = _watch(campaign, slot, journal, lost_after)
                if outcome is not None:
                    finish(outcome, slot.station.name)
            if slot.lost and slot.step is not None:
                todo.appendleft(slot.step)
                journal.write("requeue", step=slot.step.key, station=slot.station.name)
                slot.step = None
        alive = [s for s in slots if not s.lost]
        stranded = [
            s for s in todo if s.station and s.station not in {a.station.name for a in alive}
        ]
        for step in stranded:
            todo.remove(step)
            error = f"pinned to station {step.station!r}, which is lost"
            finish(StepOutcome(step, "fail", (), error), step.station)
        busy = [s for s in alive if s.step is not None]
        if not busy and (not todo or result.stopped):
            return
        if not alive:
            result.stopped = "no station left: " + "; ".join(
                f"{s.station.name} {s.lost}" for s in slots
            )
            return
        time.sleep(poll)


def _next_step(todo: deque[Step], station: str) -> Step | None:
    for step in todo:
        if step.station in ("", station):
            todo.remove(step)
            return step
    return None


def _submit(campaign: Campaign, slot: _Slot, step: Step, journal: Journal) -> StepOutcome | None:
    """Queue ``step`` on ``slot``'s station and start its queue; an outcome if refused."""
    from bluesky_queueserver_api import BPlan

    item = BPlan(step.plan_name, **json_arguments(step.args))
    item.meta = {**campaign.step_metadata(step), "station_name": slot.station.name}
    try:
        response = slot.control.item_add(item)
    except slot.control.RequestFailedError as exc:  # refused: the plan's own message
        journal.write("refused", step=step.key, station=slot.station.name, error=str(exc))
        return StepOutcome(step, "fail", (), str(exc))
    except Exception as exc:  # no answer: try another station
        slot.lost = f"did not take an item: {type(exc).__name__}: {exc}"
        journal.write("lost", station=slot.station.name, error=slot.lost)
        slot.step = step  # requeued by the caller
        return None
    slot.step, slot.item_uid = step, response["item"]["item_uid"]
    slot.started, slot.running, slot.heard = time.monotonic(), False, time.monotonic()
    journal.write("dispatch", step=step.key, station=slot.station.name, item_uid=slot.item_uid)
    _start_queue(slot)
    return None


def _start_queue(slot: _Slot) -> None:
    with contextlib.suppress(slot.control.RequestFailedError):  # running: the item waits
        slot.control.queue_start()


def _watch(
    campaign: Campaign, slot: _Slot, journal: Journal, lost_after: float
) -> StepOutcome | None:
    """Look at ``slot``'s station once; the step's outcome when it has ended."""
    step = slot.step
    assert step is not None
    now = time.monotonic()
    try:
        status = slot.api.status(reload=True)
        slot.heard = now
    except Exception as exc:
        if now - slot.heard > lost_after:
            slot.lost = f"not answering for {now - slot.heard:.0f} s: {type(exc).__name__}"
            journal.write("lost", station=slot.station.name, step=step.key, error=slot.lost)
            return _done_on_disk(campaign, slot, step)
        return None
    if status["running_item_uid"] == slot.item_uid:
        if not slot.running:
            slot.running = True
            journal.write("running", step=step.key, station=slot.station.name)
        return None
    if status["plan_history_uid"] != slot.history:
        slot.history = status["plan_history_uid"]
        try:
            items = slot.api.history_get(reload=True)["items"]
        except Exception:
            return None
        for item in reversed(items):
            if item.get("item_uid") == slot.item_uid:
                return _ended(slot, step, item.get("result", {}), journal)
    if status["manager_state"] == "idle" and status["items_in_queue"]:
        _start_queue(slot)  # the queue was stopped (by a person, or a failed item)
    if not status["worker_environment_exists"]:
        slot.lost = "its worker environment is closed"
        journal.write("lost", station=slot.station.name, step=step.key, error=slot.lost)
        return _done_on_disk(campaign, slot, step)
    return None


def _ended(slot: _Slot, step: Step, result: Mapping[str, Any], journal: Journal) -> StepOutcome:
    seconds = time.monotonic() - slot.started
    uids = tuple(result.get("run_uids", ()))
    name, slot.step = slot.station.name, None
    if result.get("exit_status") == COMPLETED and uids:
        journal.write("done", step=step.key, station=name, run_uids=list(uids))
        return StepOutcome(step, "success", uids, "", seconds)
    error = result.get("msg") or f"exit status {result.get('exit_status')!r}"
    if result.get("exit_status") == COMPLETED:
        error = "the plan opened no bluesky run; a campaign step must be one"
    journal.write("failed", step=step.key, station=name, run_uids=list(uids), error=error)
    return StepOutcome(step, "fail", uids, error, seconds)


def _done_on_disk(campaign: Campaign, slot: _Slot, step: Step) -> StepOutcome | None:
    """A lost station's step that did finish before it died (its run says so), if any."""
    uid = finished_steps(campaign, [Path(slot.station.results)]).get(step.key)
    if uid is None:
        return None
    slot.step = None
    return StepOutcome(step, "success", (uid,), "", time.monotonic() - slot.started)

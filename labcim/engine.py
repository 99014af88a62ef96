"""The RunEngine as labcim sets it up: results saved, progress shown, Ctrl-C pauses.

`session` is the one line that starts interactive work; `run_engine` and `run_plan` are
what ``labcim run`` and the campaign runner share.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.utils import DefaultDuringTask, ProgressBarManager, RunEngineInterrupted

from labcim.hdf5 import HDF5Writer

#: The chip "URL" of plans that need no board: they are given ``None``.
NO_CHIP = "none"


SIGNAL_POLL_S = 0.1
"""How often the main thread wakes while a plan runs, to run a pending Ctrl-C (s)."""


class PromptSignals(DefaultDuringTask):
    """bluesky's wait for the running plan, waking the main thread every
    :data:`SIGNAL_POLL_S` so that a Ctrl-C pauses the plan however busy its threads are.

    Python runs a signal handler only in the main thread, when it executes bytecode.
    bluesky's default blocks the main thread in one untimed wait, and a SIGINT the
    kernel hands to another thread (the board's worker, the RunEngine's loop, the
    progress bars' threads) leaves it asleep: the pause request then waited for the end
    of the plan.  A timed wait returns to the interpreter, which runs the handler.
    (A Qt matplotlib backend keeps bluesky's own loop, which services its events.)
    """

    def block(self, blocking_event: Any) -> None:
        matplotlib = sys.modules.get("matplotlib")
        if matplotlib is not None and "qt" in matplotlib.get_backend().lower():
            super().block(blocking_event)
            return
        while not blocking_event.wait(SIGNAL_POLL_S):
            pass


class PlanAbortedError(Exception):
    """The operator aborted a paused plan; its run is recorded with exit status ``abort``."""


def run_engine(out: str | Path, *, progress: bool = True, live: bool = False) -> RunEngine:
    """A RunEngine writing every run to HDF5 at ``out``.

    Its default context manager makes Ctrl-C pause the plan at the next checkpoint (a
    second Ctrl-C pauses at once); `run_plan` then asks whether to resume or abort.

    Parameters
    ----------
    out : str or Path
        Results location, as for `labcim.HDF5Writer`.
    progress : bool
        Progress bars for moves and other waits (bluesky's `ProgressBarManager`).
    live : bool
        Subscribe bluesky's `BestEffortCallback`: live tables and plots.
    """
    RE = RunEngine({}, during_task=PromptSignals())
    RE.record_interruptions = True  # pauses and suspensions, in the run's interruptions
    RE.subscribe(HDF5Writer(out))
    if progress:
        RE.waiting_hook = ProgressBarManager()
    if live:
        from bluesky.callbacks.best_effort import BestEffortCallback

        RE.subscribe(BestEffortCallback())
    return RE


def connect_chip(url: str, **options: Any) -> Any:
    """The instrument a URL names: a board, an SMU, or ``None`` for ``"none"``.

    VISA resource strings (they contain ``::``, e.g. ``TCPIP::127.0.0.1::5025::SOCKET``)
    give an SMU device (:func:`labcim.connect_smu`), so campaigns and ``labcim run`` drive
    the SMU plans the same way; anything else goes to :func:`labcim.connect`.
    """
    if url == NO_CHIP:
        return None
    from labcim.connection import connect, connect_smu

    return (connect_smu if "::" in url else connect)(url, **options)


@contextlib.contextmanager
def connected(connect: Callable[..., Any], url: str, **options: Any) -> Iterator[Any]:
    """``connect(url, **options)``, the board closed (if any) when the block ends."""
    board = connect(url, **options)
    try:
        yield board
    finally:
        if board is not None:
            board.close()


def session(
    chip_url: str,
    out: str | Path,
    *,
    live: bool = True,
    progress: bool = True,
    quiet: bool = False,
    **options: Any,
) -> tuple[RunEngine, Any]:
    """Start working interactively: ``RE, board = labcim.session("sim://pcm-hermes", "data/")``.

    Parameters
    ----------
    chip_url : str
        Passed to `labcim.connect` with ``options``; ``"none"`` gives no board.
    out : str or Path
        Where every run is saved (HDF5, see docs/data-layout.md).
    live : bool
        Live tables and plots (`BestEffortCallback`) when running under IPython or Jupyter.
    progress : bool
        Progress bars while the RunEngine waits.
    quiet : bool
        Neither progress bars nor live output, whatever ``live`` and ``progress`` say.

    Returns
    -------
    RE : RunEngine
        Ready for ``RE(plan(board, ...))``; Ctrl-C pauses, then ``RE.resume()`` or
        ``RE.abort()``.
    board : ChipTestBoard or None
        The connected board.
    """
    RE = run_engine(out, progress=progress and not quiet, live=live and not quiet and _in_ipython())
    return RE, connect_chip(chip_url, **options)


def run_plan(
    RE: RunEngine,
    plan: Generator,
    md: Mapping[str, Any],
    on_pause: Callable[[], bool] | None = None,
) -> tuple[str, ...]:
    """Run ``plan`` with the extra start metadata ``md``; handle pauses.

    Parameters
    ----------
    on_pause : callable, optional
        Called each time the plan pauses (Ctrl-C); returns True to resume, False to
        abort.  Without it a pause aborts, which suits unattended runs.

    Returns
    -------
    tuple of str
        The uids of the runs the plan opened.

    Raises
    ------
    PlanAbortedError
        If the plan was paused and then aborted (its run is closed as ``abort``).
    Exception
        Whatever the plan raised; its run is closed as ``fail``.
    """
    try:
        return RE(plan, **md)
    except RunEngineInterrupted:
        pass
    while on_pause is not None and on_pause():
        try:
            return RE.resume()
        except RunEngineInterrupted:
            continue
    RE.abort("aborted by the operator after a pause")
    raise PlanAbortedError("aborted by the operator after a pause")


def stop_after_run(RE: RunEngine, on_pause: Callable[[], bool] | None) -> bool:
    """Whether to stop before the next plan of a sequence (a campaign's steps, the demo,
    a replay of several runs) because Ctrl-C came after the last checkpoint of the plan
    that just ended.

    bluesky lets such a plan finish and only keeps the request
    (``RE.deferred_pause_requested``): without this the press would be lost and the next
    plan start.  The operator is asked now, between the two plans, as at a pause:
    ``on_pause()`` True goes on; without ``on_pause`` (no terminal) it stops.
    """
    if not RE.deferred_pause_requested:
        return False
    return on_pause is None or not on_pause()


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None

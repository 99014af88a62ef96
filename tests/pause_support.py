"""Running labcim's plans with interruptions: a pause, a suspension, a stop, an abort.

Each helper runs a real plan under a real RunEngine with the HDF5 writer and returns
the run read back from disk, so the tests compare what a user would find in the file.
The interruption is requested from another thread, the way bluesky-queueserver, a
suspender's signal or a second terminal do it, when the plan has emitted a given number
of events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from labcim import HDF5Writer, open_runs
from labcim.plan_data import LINK_KEYS

LINK_FIELDS = LINK_KEYS
"""Link-health signals: they count the traffic, which a pause or a replay changes."""


class Interrupt:
    """Calls ``action(RE)`` in a new thread when the ``count``-th event of ``stream``
    (any stream if None) is emitted, or with ``signal`` (a function of the instrument
    giving an ophyd signal), at its ``count``-th new value: mid-iteration, where an
    interruption makes bluesky replay what the iteration already did."""

    def __init__(
        self,
        count: int,
        action: Callable[[RunEngine], Any],
        stream: str | None = None,
        signal: Callable[[Any], Any] | None = None,
    ) -> None:
        self.count, self.action, self.stream, self.signal = count, action, stream, signal
        self.seen = 0
        self.thread: threading.Thread | None = None
        self._streams: dict[str, str] = {}
        self.RE: RunEngine | None = None

    def attach(self, instrument: Any) -> None:
        """Watch the signal of ``instrument`` (if the interrupt counts one).

        The signal changes in the instrument's worker thread, inside an operation; the
        operation is held there (up to 0.5 s) until the RunEngine has taken the
        request, so the interruption lands in the middle of the iteration.
        """
        if self.signal is not None:
            self.signal(instrument).subscribe(lambda **kw: self._tick(hold=0.5), run=False)

    def __call__(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self._streams[doc["uid"]] = doc["name"]
        if name != "event" or self.signal is not None:
            return
        if self.stream is None or self._streams.get(doc["descriptor"]) == self.stream:
            self._tick()

    def _tick(self, hold: float = 0.0) -> None:
        self.seen += 1
        if self.seen == self.count and self.thread is None:
            self.thread = threading.Thread(target=self.action, args=(self.RE,))
            self.thread.start()
            self.thread.join(hold)


def execute(
    out: Any,
    plan: Any,
    interrupt: Interrupt | None = None,
    *,
    suspenders: tuple = (),
    resume: bool = True,
) -> tuple[Any, bool]:
    """Run ``plan`` (writing to ``out``), resuming after every pause if ``resume``.

    Returns the run read back from disk and whether the RunEngine paused.
    """
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(out, fsync=False))
    for suspender in suspenders:
        RE.install_suspender(suspender)
    if interrupt is not None:
        interrupt.RE = RE
        RE.subscribe(interrupt)
    paused = False
    try:
        RE(plan)
    except RunEngineInterrupted:  # paused, or ended by RE.stop() / RE.abort()
        paused = RE.state == "paused"
        while resume and RE.state == "paused":
            try:
                RE.resume()
            except RunEngineInterrupted:
                continue
    if interrupt is not None and interrupt.thread is not None:
        interrupt.thread.join(30)
    return open_runs(out)[-1], paused


def defer_pause(RE: RunEngine) -> None:
    """What queueserver's ``re_pause`` sends: pause at the next checkpoint."""
    RE.request_pause(defer=True)


def pause_now(RE: RunEngine) -> None:
    """What a second Ctrl-C does: pause at once, mid-iteration."""
    RE.request_pause(defer=False)


def raise_for(flag: Any, seconds: float) -> Callable[[RunEngine], None]:
    """An action raising ``flag`` (a suspender's signal), lowering it ``seconds`` later."""

    def action(RE: RunEngine) -> None:
        flag.put(1)
        time.sleep(seconds)
        flag.put(0)

    return action


def recorded(streams: dict[str, Any]) -> dict[str, Any]:
    """``streams`` (or their event counts) but the ``interruptions`` stream."""
    return {name: value for name, value in streams.items() if name != "interruptions"}


def interruptions(run: Any) -> list[str]:
    """What run ``run``'s ``interruptions`` stream holds (``pause``, ``resume``, ...)."""
    return [what for _, what in run.interruptions]


def assert_same_data(got: Any, want: Any) -> None:
    """Every stream of run ``got`` holds what run ``want`` holds, except link counters and
    time stamps: same events, same values, bit for bit.  The ``interruptions`` stream
    (labcim's RunEngines record pauses and suspensions) is the caller's to check."""
    assert recorded(got.num_events) == recorded(want.num_events)
    for name, stream in recorded(want.streams).items():
        other = got.streams[name]
        assert sorted(other) == sorted(stream), name
        np.testing.assert_array_equal(other.seq_num, stream.seq_num, err_msg=name)
        for key in stream:
            if key.endswith(LINK_FIELDS):
                continue
            a, b = np.asarray(other[key]), np.asarray(stream[key])
            if a.dtype.kind in "fc":
                np.testing.assert_array_equal(a, b, err_msg=f"{name}/{key}")
            else:
                assert a.tolist() == b.tolist(), f"{name}/{key}"
    if want.summary is not None:
        assert sorted(got.summary) == sorted(want.summary)
        for key, value in want.summary.items():
            np.testing.assert_array_equal(np.asarray(got.summary[key]), np.asarray(value), key)

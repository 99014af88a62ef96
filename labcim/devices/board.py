"""``ChipTestBoard`` and its ``FPGAInterface``: the test board as an ophyd device.

Device tree of a board named ``board`` with N cores::

    board                    identity as configuration: model, chip, device_type, n_cores,
                             rows, cols, devices_per_polarity, g_max (uS), limits, simulated
    board.fpga               firmware, protocol_version, max_payload (config); clock (s,
                             hinted); wait_until (settable, s: the board clock to wait
                             for); link health: frames_sent, frames_received, retries,
                             bad_frames, timeouts, stale_replies, last_rtt, mean_rtt (s),
                             retry_fraction
    board.simulator          record (JSON of IDENTIFY's simulator fields, read on trigger;
                             "" on real hardware), omitted: what plans record for a replay
    board.core0 ... coreN-1  CIMCore (``labcim.devices.core``), kind omitted: read them by name

``stop()`` on the board or any part of it stops every board operation queued or running
(a long pulse batch, read or MVM between two frames, a wait for the clock); bluesky
calls it on a pause, a suspension, ``RE.stop()`` and ``RE.abort()``.

The number of cores is known only after IDENTIFY, so the class with its ``coreI``
components is built per core count (:func:`board_class`).
"""

from __future__ import annotations

import functools
import json
import math
from collections import OrderedDict, deque
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device
from ophyd.device import create_device_from_components

from drivers import protocol
from drivers.board import BoardAbortedError, BoardClient
from labcim.chip_identity import RECORD_KEYS, ChipIdentity
from labcim.devices.core import CIMCore
from labcim.devices.signals import (
    DriverStatus,
    DriverWorker,
    OperationRequest,
    Readback,
    Setting,
    StopRequest,
    StopRequests,
)

LINK_WINDOW = 20
"""Driver calls over which ``retry_fraction`` is computed."""

CLOCK_READS_KEPT = 64
"""Clock readings (triggers and waits) by operation id that `FPGAInterface` remembers
for replays (a rewind goes back one iteration of a plan, a few of them at most)."""

_LINK_COUNTERS = ("frames_sent", "frames_received", "retries", "bad_frames", "timeouts")


class ClockTarget(Setting):
    """A board clock time (s) to wait for: ``set(t)`` finishes once the clock reads >= t.

    A simulated board's clock is moved to ``t`` at once; with real hardware the client
    sleeps until the board clock gets there.  Idempotent: a target already reached
    changes nothing, so bluesky replaying the set after a pause never advances a
    simulated clock twice.  ``stop()`` ends a wait early.
    """

    def check_value(self, value: Any) -> None:
        if not (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 <= value <= protocol.MAX_CLOCK
        ):
            raise ValueError(
                f"{self.name}: clock target {value!r} s must be finite and within "
                f"[0, {protocol.MAX_CLOCK:g}] s"
            )

    def write(self, value: float, stop: StopRequest | None = None, op_id: int = 0) -> None:
        now = self.root.client.wait_until(float(value), cancel=stop)
        self.parent.clock.update(self.parent.first_clock(op_id, now))
        self.update(value)

    def set(self, value: Any, *, timeout: float | None = None, **kwargs: Any) -> DriverStatus:
        """Wait for board clock ``value`` (s); named by ``board.fpga.request`` (as
        ``plans.stubs.wait_until`` does), a replayed wait leaves the clock reading its
        first pass gave."""
        self.check_value(value)
        op_id = self.parent.request.take()
        if timeout is None:  # the backstop counts from the time the clock gets there
            ahead = max(0.0, float(value) - (self.parent.clock.get() or 0.0))
            timeout = ahead + self.root.status_timeout
        return self.root.run_stoppable(
            self, lambda stop: self.write(value, stop, op_id), timeout=timeout
        )

    def stop(self, *, success: bool = False) -> None:
        self.root.stop(success=success)


class FPGAInterface(Device):
    """The digital side of the board: firmware, clock and link health.

    Link-health signals are refreshed after every command any part of the board sends,
    so a suspender on them (e.g. ``SuspendCeil(board.fpga.retry_fraction, 0.2)``) sees
    the link degrade while a plan runs.  ``retry_fraction`` is the fraction of frames
    sent that were retries over the last :data:`LINK_WINDOW` commands; the counters are
    totals since connecting.
    """

    firmware = Cpt(Readback, value="", kind="config")
    protocol_version = Cpt(Readback, value=0, kind="config")
    max_payload = Cpt(Readback, value=0, units="bytes", kind="config")
    clock = Cpt(Readback, units="s", kind="hinted")
    wait_until = Cpt(ClockTarget, units="s", kind="omitted")
    frames_sent = Cpt(Readback, value=0, kind="normal")
    frames_received = Cpt(Readback, value=0, kind="normal")
    retries = Cpt(Readback, value=0, kind="normal")
    bad_frames = Cpt(Readback, value=0, kind="normal")
    timeouts = Cpt(Readback, value=0, kind="normal")
    stale_replies = Cpt(Readback, value=0, kind="normal")
    last_rtt = Cpt(Readback, units="s", kind="normal")
    mean_rtt = Cpt(Readback, units="s", kind="normal")
    retry_fraction = Cpt(Readback, kind="normal")
    request = Cpt(OperationRequest, kind="omitted")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history: deque[tuple[int, int]] = deque(maxlen=LINK_WINDOW + 1)
        self._clock_reads: OrderedDict[int, float] = OrderedDict()  # by operation id

    def refresh_link(self) -> None:
        """Copy the client's link statistics into the signals (no traffic)."""
        stats = self.root.client.stats
        for key in (*_LINK_COUNTERS, "stale_replies", "last_rtt"):
            getattr(self, key).update(getattr(stats, key))
        self.mean_rtt.update(stats.mean_rtt)
        self._history.append((stats.frames_sent, stats.retries))
        (f0, r0), (f1, r1) = self._history[0], self._history[-1]
        self.retry_fraction.update((r1 - r0) / (f1 - f0) if f1 > f0 else 0.0)

    def trigger(self) -> DriverStatus:
        """Read the board clock (and refresh the link health).

        A trigger named by ``request`` (an operation id, as ``plans.stubs.trigger_wait``
        sets it) that bluesky replays after a pause or suspension gives the clock its
        first read gave (`first_clock`): the iteration's readings are then those of its
        first pass (the board answers a replayed read from its record), and the clock
        says when they were taken, not when the replay asked.
        """
        op_id = self.request.take()
        return self.root.run(
            self, lambda: self.clock.update(self.first_clock(op_id, self.root.client.clock()))
        )

    def first_clock(self, op_id: int, now: float) -> float:
        """The clock (s) to report for operation ``op_id`` read as ``now``: the first
        reading of that operation (``now`` for a first one, or for an unnamed one)."""
        if not op_id:
            return now
        first = self._clock_reads.setdefault(op_id, now)
        self._clock_reads.move_to_end(op_id)
        while len(self._clock_reads) > CLOCK_READS_KEPT:
            self._clock_reads.popitem(last=False)
        return first

    def stop(self, *, success: bool = False) -> None:
        """Stop every board operation (:meth:`ChipTestBoard.stop`)."""
        self.root.stop(success=success)


class SimulatorState(Device):
    """What a simulated board says about its chip's state, read on ``trigger()``.

    ``record`` is the ``simulator`` object of a fresh IDENTIFY reply as JSON (its spec,
    clock, random-generator fingerprint and core configurations: what a replay needs to
    rebuild the chip as it is now, docs/protocol.md), or ``""`` from a board that
    reports none (real hardware).
    """

    record = Cpt(Readback, value="", kind="normal")

    def trigger(self) -> DriverStatus:
        """Send IDENTIFY and keep its simulator fields."""

        def work() -> None:
            state = self.root.client.identify().get("simulator")
            self.record.update("" if state is None else json.dumps(state, sort_keys=True))

        return self.root.run(self, work)


class ChipTestBoard(Device):
    """A CIM test board and its chip.  Use :func:`labcim.connect` to get one.

    Parameters
    ----------
    client : BoardClient
        An open client; the device owns it from now on (:meth:`close`).
    identity : ChipIdentity
        What the client's IDENTIFY reply says (``board.identity``: geometry, device
        type and limits, used for every check before sending).
    name : str
        Prefix of every signal name (``board_core0_conductance_map``, ...).
    status_timeout : float
        Backstop (s) after which a status fails if its command has not finished; the
        client already bounds every frame by ``(retries + 1) * timeout``.
    """

    model = Cpt(Readback, value="", kind="config")
    chip = Cpt(Readback, value="", kind="config")
    device_type = Cpt(Readback, value="", kind="config")
    n_cores = Cpt(Readback, value=0, kind="config")
    rows = Cpt(Readback, value=0, kind="config")
    cols = Cpt(Readback, value=0, kind="config")
    devices_per_polarity = Cpt(Readback, value=0, kind="config")
    g_max = Cpt(Readback, units="uS", kind="config")
    limits = Cpt(Readback, value="", kind="config")
    simulated = Cpt(Readback, value=False, kind="config")
    fpga = Cpt(FPGAInterface, kind="normal")
    simulator = Cpt(SimulatorState, kind="omitted")

    def __init__(
        self,
        client: BoardClient,
        identity: ChipIdentity,
        *,
        name: str = "board",
        status_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        # Set before Device.__init__: the components reach them while being built.
        self.client = client
        self.identity = identity
        self.status_timeout = status_timeout
        self.worker = DriverWorker(name)
        self.stops = StopRequests()
        super().__init__(name=name, **kwargs)
        info = client.info
        for key in RECORD_KEYS:  # the simulator's state is read when asked (simulator)
            value = getattr(identity, key)
            if key == "limits":
                value = json.dumps(dict(value), sort_keys=True)
            getattr(self, key).update(value)
        self.fpga.firmware.update(info["firmware"])
        self.fpga.protocol_version.update(client.protocol_version)
        self.fpga.max_payload.update(client.max_payload)
        self.fpga.clock.update(client.clock())
        self.fpga.refresh_link()

    @property
    def cores(self) -> list[CIMCore]:
        """The core devices, in index order."""
        return [getattr(self, f"core{i}") for i in range(self.identity.n_cores)]

    def core(self, index: int) -> CIMCore:
        """Core ``index``; raises IndexError naming the cores that exist."""
        n = self.identity.n_cores
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise IndexError(f"{self.name}: core {index!r} does not exist; cores are 0..{n - 1}")
        return getattr(self, f"core{index}")

    def run(self, obj: Any, work: Any, *, timeout: float | None = None) -> DriverStatus:
        """Run ``work`` (driver calls) in the board's worker thread; the status fails with
        its exception."""
        return self.worker.run(
            obj,
            work,
            timeout=self.status_timeout if timeout is None else timeout,
            after=self.fpga.refresh_link,
        )

    def run_stoppable(self, obj: Any, work: Any, *, timeout: float | None = None) -> DriverStatus:
        """Like :meth:`run`, for ``work(stop)`` whose driver calls check the flag ``stop``
        (a `StopRequest`) between frames: :meth:`stop` ends it there."""
        return self.stops.run(
            self.worker,
            obj,
            work,
            BoardAbortedError,
            timeout=self.status_timeout if timeout is None else timeout,
            after=self.fpga.refresh_link,
        )

    def stop(self, *, success: bool = False) -> None:
        """Stop every board operation queued or running, at its next frame boundary.

        With ``success`` (bluesky's pause and suspension) their statuses finish, as the
        operations will be replayed with the same operation ids; otherwise they fail with
        ``BoardAbortedError``.  Pulses of a batch not yet complete are not applied.
        """
        self.stops.stop_all(success)

    def trigger(self) -> DriverStatus:
        """Read the clock and link health (cores are triggered one by one)."""
        return self.fpga.trigger()

    def close(self) -> None:
        """Stop the worker thread and close the link to the board."""
        self.worker.close()
        self.client.close()


@functools.cache
def board_class(n_cores: int) -> type[ChipTestBoard]:
    """The ``ChipTestBoard`` subclass with components ``core0`` ... ``core{n_cores-1}``."""
    cores = {f"core{i}": Cpt(CIMCore, index=i, kind="omitted") for i in range(n_cores)}
    return create_device_from_components(
        f"ChipTestBoard{n_cores}",
        docstring=f"{ChipTestBoard.__doc__}\n\n    This board has {n_cores} cores.",
        base_class=ChipTestBoard,
        **cores,
    )

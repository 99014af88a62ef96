"""Small plan stubs the public plans are built from (the style of ``bluesky.plan_stubs``).

Each is a generator of bluesky messages; none opens a run.  They talk to the hardware
only through the devices of ``labcim.devices``.  The stubs used in every iteration yield
``Msg`` objects themselves, as ``bluesky.plan_stubs`` does inside: each call of a
``bluesky.plan_stubs`` function also records the caller's stack (bluesky 1.15), which
costs more than the message itself.  Values the plans derive (error
statistics, ideal outputs, summary figures) travel in :class:`Derived` signals so that
they are recorded in events next to the readings they come from.

Every stub that makes an instrument act gives the action a fresh operation id in the
message itself (the batch or array argument of a ``set``, or a ``set`` of the device's
``request`` before a ``trigger``).  When bluesky replays the messages since the last
checkpoint after a pause or suspension, the same ids reach the instrument, which
recognizes what it already did: a pulse batch is not applied again, a read or MVM
returns the data of its first execution, a sweep is not repeated.  Waits for the board
clock take an absolute time, so a replayed wait changes nothing.  That is what lets
every plan keep its checkpoints at every iteration (docs/plans.md, "Pausing").
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from bluesky.utils import Msg, short_uid
from ophyd import Signal

from labcim.chip_identity import RECORD_KEYS
from labcim.devices.core import CORE_SETTINGS
from labcim.devices.signals import UnitSignal, new_op_id, plain
from labcim.plan_args import EXTRA_METADATA

Plan = Generator[Msg, Any, Any]
"""A bluesky plan or plan stub."""


class Derived(UnitSignal):
    """A value the plan computed, recorded like a reading (not hardware).

    It has no configuration: ophyd's `Signal` reports its value as its configuration,
    and bluesky stores that in each descriptor, so every stream's first computed value
    (e.g. a 1000 x 256 batch of ideal MVM outputs) would be written again as if it were
    a setting of the run.
    """

    def read_configuration(self) -> dict[str, dict[str, Any]]:
        return {}

    def describe_configuration(self) -> dict[str, dict[str, Any]]:
        return {}


def derived(name: str, value: Any = 0.0, units: str = "", kind: str = "normal") -> Derived:
    """A :class:`Derived` signal named ``name`` holding ``value``."""
    return Derived(name=name, value=value, units=units, kind=kind)


class Figures:
    """Derived signals read as one object: one ``read`` message per event for all of
    them instead of one each.

    bluesky spends ~0.1 ms on every message on Python 3.11 (runtime protocol checks,
    the bundler's check of each reading's keys against every object read before in the
    event), more than a plan takes to compute these values: an inference batch read 14
    objects per event.  The data keys are the signals' own names, so the streams hold
    the same keys; only the descriptor's ``object_keys`` names this group.  Make one
    per stream and read the same one in every event (bluesky makes a descriptor per
    set of objects read).

    Parameters
    ----------
    name : str
        Object name in the descriptors.
    signals : iterable of Derived
        The values, in their order in the events.
    """

    parent = None

    def __init__(self, name: str, signals: Iterable[Derived]) -> None:
        self.name = name
        self.signals = list(signals)

    def __repr__(self) -> str:
        return f"Figures({self.name!r}, {[s.name for s in self.signals]})"

    def read(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for signal in self.signals:
            out.update(signal.read())
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for signal in self.signals:
            out.update(signal.describe())
        return out

    def read_configuration(self) -> dict[str, dict[str, Any]]:
        return {}

    def describe_configuration(self) -> dict[str, dict[str, Any]]:
        return {}

    @property
    def hints(self) -> dict[str, list[str]]:
        """The hinted signals' names (bluesky's ``fields`` hint)."""
        return {"fields": [f for signal in self.signals for f in signal.hints["fields"]]}


def identity(board: Any) -> Plan:
    """The board's identity as a dict (``limits`` parsed from its JSON).

    A simulated board is asked once more (``board.simulator``: one IDENTIFY over the
    wire) what rebuilds its chip as it is now, kept as ``sim_chip``: its spec, clock,
    random-generator fingerprint and core configurations (docs/replay.md).  Real
    hardware is not asked anything.
    """
    values = {}
    for key in RECORD_KEYS:  # what a run records as board_identity
        values[key] = yield from value(getattr(board, key))
    values["limits"] = json.loads(values["limits"])
    if values["simulated"]:
        yield from trigger_wait(board.simulator)
        record = yield from value(board.simulator.record)
        if record:
            values["sim_chip"] = json.loads(record)
    return values


def settings(core: Any) -> Plan:
    """The core's current settings (``labcim.devices.core.CORE_SETTINGS``) as a dict (the
    last values the board took), for :func:`restore_settings`."""
    values = {}
    for key in CORE_SETTINGS:
        values[key] = yield from value(getattr(core, key))
    return values


def configure(core: Any, **changes: Any) -> Plan:
    """Set configuration fields of ``core`` (e.g. ``read_mode="1-phase"``), waiting.

    All are set at once, then waited for together (as ``bps.mv`` does).
    """
    if not changes:
        return
    group = short_uid("configure")
    for key, new in changes.items():
        yield Msg("set", getattr(core, key), new, group=group)
    yield Msg("wait", None, group=group)


def restore_settings(saved: Mapping[Any, Mapping[str, Any]]) -> Plan:
    """Put back the settings ``{core: settings(core)}`` saved before a plan changed them."""
    for core, values in saved.items():
        yield from configure(core, **values)


def set_wait(obj: Any, value: Any) -> Plan:
    """Set ``obj`` to ``value`` and wait for it (``bps.abs_set(..., wait=True)``)."""
    group = short_uid("set")
    yield Msg("set", obj, value, group=group)
    yield Msg("wait", None, group=group)


def trigger_wait(obj: Any) -> Plan:
    """Trigger ``obj`` and wait for it (``bps.trigger(..., wait=True)``).

    A device with a ``request`` signal (``OperationRequest``) first gets a fresh
    operation id, so that a replay of this trigger repeats nothing.
    """
    group = yield from trigger(obj)
    yield Msg("wait", None, group=group)


def trigger(obj: Any) -> Plan:
    """:func:`trigger_wait` without the wait; returns the group to wait for."""
    group = short_uid("trigger")
    request = getattr(obj, "request", None)
    if request is not None:
        yield Msg("set", request, new_op_id())
    yield Msg("trigger", obj, group=group)
    return group


def checkpoint() -> Plan:
    """Mark where a resume replays from (``bps.checkpoint``, without its stack record)."""
    yield Msg("checkpoint")


def value(signal: Any) -> Plan:
    """The value of ``signal`` as it reads now (``bps.rd`` of a signal); an array as a
    plain ndarray (``labcim.devices.signals.ReadingArray`` is for documents)."""
    reading = yield Msg("read", signal)
    return None if reading is None else plain(reading[signal.name]["value"])


class PulseArgument:
    """A pulse batch with the operation id it is applied under, for ``core.program``.

    The id is drawn when the plan makes the message, so a replay of that message sends
    the same id and the board does not apply the batch again.  The batch's arrays are
    reached as attributes (``row``, ``col``, ...).
    """

    def __init__(self, batch: Any, verify: bool = False) -> None:
        self.batch = batch
        self.op_id = new_op_id()
        self.verify_op_id = new_op_id() if verify else 0

    def __getattr__(self, name: str) -> Any:
        batch = self.__dict__["batch"]
        if isinstance(batch, Mapping):  # a batch given as a dict of arrays
            try:
                return batch[name]
            except KeyError:
                raise AttributeError(name) from None
        return getattr(batch, name)

    def __len__(self) -> int:
        return len(self.row)

    def __repr__(self) -> str:
        return f"PulseArgument({len(self)} pulses, op_id={self.op_id:#x})"


def apply_pulses(core: Any, batch: Any) -> Plan:
    """Apply one pulse batch to ``core`` and wait for the board's acknowledgement.

    The batch is checked against the chip's geometry and limits before it is sent, and
    applied exactly once however often bluesky replays the message.
    """
    yield from set_wait(core.program, PulseArgument(batch))


def pulse_and_read(core: Any, batch: Any) -> Plan:
    """Apply one pulse batch to ``core`` and read its conductance map right after, in
    one status (:func:`apply_pulses` then :func:`read_conductance`, one round trip
    fewer); returns the map (uS).  Both operations carry ids: a replay repeats neither.
    """
    group = yield from send_pulse_and_read(core, batch)
    return (yield from read_after(core, group))


def send_pulse_and_read(core: Any, batch: Any) -> Plan:
    """:func:`pulse_and_read` without waiting: queue the batch and its verify read on the
    board and return the group to wait for (:func:`read_after`).

    The board's worker runs queued commands in order, so a plan can compute the next
    core's batch while the board applies this one.
    """
    group = short_uid("set")
    yield Msg("set", core.program, PulseArgument(batch, verify=True), group=group)
    return group


def read_after(core: Any, group: str) -> Plan:
    """Wait for ``group`` (from :func:`send_pulse_and_read`); returns ``core``'s map (uS)."""
    yield Msg("wait", None, group=group)
    return (yield from value(core.conductance.map))


def measure(objs: Iterable[Any]) -> Plan:
    """Trigger ``objs`` one after the other, each waited for (the board runs one command
    at a time, and a read must follow the command before it)."""
    for obj in objs:
        yield from trigger_wait(obj)


def read_conductance(core: Any) -> Plan:
    """Read the conductance map of ``core``: (2 * dpp, rows, cols) float32, uS."""
    yield from trigger_wait(core.conductance)
    return (yield from value(core.conductance.map))


class ArrayArgument:
    """An array carried by a message without the RunEngine listing it, with the
    operation id of what it is set for (e.g. the MVM of these inputs).

    bluesky 1.15 records every ``set`` message's arguments on its tracing span through
    ``sanitize_np``, which calls ``tolist()`` on a numpy array even with tracing off:
    6 ms for a batch of 1000 x 256 input codes, more than the MVM's own host work.
    Devices see the array through ``np.asarray`` and the id as ``op_id``.
    """

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.op_id = new_op_id()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.array(self.array, dtype, copy=copy)

    def __repr__(self) -> str:
        return f"ArrayArgument(shape={self.array.shape}, dtype={self.array.dtype})"


def run_mvm(core: Any, codes: np.ndarray) -> Plan:
    """Run the MVM of ``codes`` (batch, rows) on ``core``; returns the outputs (uA)."""
    group = yield from start_mvm(core, codes)
    return (yield from mvm_outputs(core, group))


def start_mvm(core: Any, codes: np.ndarray) -> Plan:
    """:func:`run_mvm` without waiting for the MVM: returns the group to wait for
    (:func:`mvm_outputs`), so that the plan can compute meanwhile."""
    yield from set_wait(core.mvm.inputs, ArrayArgument(codes))
    return (yield from trigger(core.mvm))


def mvm_outputs(core: Any, group: str) -> Plan:
    """Wait for ``group`` (from :func:`start_mvm`); returns ``core``'s outputs (uA)."""
    yield Msg("wait", None, group=group)
    return (yield from value(core.mvm.outputs))


def record(values: Mapping[Signal, Any]) -> None:
    """Store derived values in their signals for the next event.

    A plain call, not a plan stub: these signals are the plan's own bookkeeping, not
    hardware, and a message with a status per value would cost more than the whole
    verify read of a small core.
    """
    for signal, value in values.items():
        signal.put(value)


def event(objs: Sequence[Any], stream: str = "primary") -> Plan:
    """One event of ``objs`` as they are now, without triggering them."""
    yield Msg("create", name=stream)
    for obj in objs:
        yield Msg("read", obj)
    yield Msg("save")


def board_clock(board: Any) -> Plan:
    """Read the board clock (s)."""
    yield from trigger_wait(board.fpga)
    return (yield from value(board.fpga.clock))


def wait_until(board: Any, clock: float) -> Plan:
    """Let the board clock reach ``clock`` (s) (``board.fpga.wait_until``: a simulated
    clock is advanced to it, a real one waited for).  Returns the clock afterwards.

    Idempotent: replayed after a pause, it does not move a simulated clock again, and
    the clock reads as after its first pass (the wait carries an operation id).
    """
    yield Msg("set", board.fpga.request, new_op_id())
    yield from set_wait(board.fpga.wait_until, float(clock))
    return (yield from value(board.fpga.clock))


def extra_metadata(md: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plan's ``md`` checked (`labcim.plan_args.EXTRA_METADATA`) for its start document.

    Raises
    ------
    ValueError
        A key labcim or bluesky sets (``plan_name``, ``board_identity``, ...: what replay
        and calibration read back), or a value JSON cannot store.
    """
    try:
        return EXTRA_METADATA("md", md) if md else {}
    except ValueError as exc:
        raise ValueError(f"md: {exc}") from None


def check_cores(board: Any, cores: Sequence[int]) -> list[Any]:
    """The core devices of ``cores``; ValueError naming the field if one is unknown or
    repeated (checked before anything is sent)."""
    cores = list(cores)
    if not cores:
        raise ValueError("cores: give at least one core")
    if len(set(cores)) != len(cores):
        raise ValueError(f"cores = {cores} lists a core twice")
    try:
        return [board.core(c) for c in cores]
    except IndexError as exc:
        raise ValueError(f"cores = {cores}: {exc}") from None


def summary_stream(values: Mapping[str, Any], units: Mapping[str, str] | None = None) -> Plan:
    """Emit ``values`` as the one event of the ``summary`` stream (``Run.summary``)."""
    units = units or {}
    signals = [derived(k, v, units.get(k, "")) for k, v in values.items()]
    yield from event([Figures("summary", signals)], stream="summary")

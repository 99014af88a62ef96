"""What each plan records: its streams, their data keys, its summary keys, named once.

The plans name what they record from here, and everything that reads a run back
(calibration, replay and comparison, the demo, the figures, the key figures, ``labcim
show``) finds it here: a reader never searches keys by their ending or falls back from
one stream to another, and renaming a key is one edit that every reader follows.
docs/plans.md and docs/data-layout.md describe the data themselves.

- `PLANS`: per plan, which stream holds what (`Streams`) and the default name of the
  instrument device its keys start with;
- `Keys`: the data keys of a run's instrument (``board_fpga_clock``) and of each core
  (``board_core0_conductance_map``: ophyd names a signal by its device path), read from
  the run (`RunData`) or built by a plan from its devices;
- summary keys: `core_figure` (``core0_weight_error``; ``program_core0_...`` when a plan
  programmed before it measured), `mode_prefix` (``core0_4phase_d8_a8_``), `time_prefix`
  (``t3600s``), and `parse_summary_key` for readers that go the other way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from labcim.hdf5.reader import Run, Stream

PRIMARY = "primary"
PROGRAM = "program"
VERIFY = "verify"
REFERENCE = "reference"
EVALUATION = "evaluation"
"""Stream names; the summary figures are the one event of the stream
``labcim.hdf5.layout.SUMMARY_STREAM`` (``Run.summary``)."""

DEVICE = "device"
"""Start-document key: the name of the instrument device a plan ran on (the prefix of its
readings' data keys, ``connect(url, name=...)``)."""

PROGRAM_PREFIX = "program_"
"""Prefix of the programming figures of a plan that programs before it measures."""

ITERATION = "iteration"  # write-verify iteration (0: the read before any pulse)
ELAPSED = "elapsed"  # s since programming, from the board clock (retention, inference)
TIME = "time"  # inference: the time point asked for (s)
COMPENSATION = "compensation"  # inference: drift compensation mode
BATCH = "batch"  # inference: batch index
SAMPLES = "samples"  # inference: valid samples of the batch
PREDICTIONS = "predictions"  # inference: labels (or outputs) of the batch
BRANCH = "branch"  # I-V: 0 the SET branch, 1 the RESET branch
CYCLE = "cycle"  # I-V: cycle index
"""Data keys plans derive for the whole run (no device prefix)."""


def layer_key(layer: int, name: str) -> str:
    """Inference data key of one weight layer: ``layer0_error``, ``layer0_deviation``."""
    return f"layer{layer}_{name}"


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
"""Link-health readings of the board (``<board>_fpga_<name>``): they describe the wire and
the host's clock, not the chip, so a comparison never requires them to agree."""


@dataclass(frozen=True)
class Streams:
    """Which stream of a plan's run holds what; None where the plan records no such data.

    Attributes
    ----------
    programming : str
        Write-verify iterations, one event each: the cores' maps, cells out of tolerance,
        error statistics, pulses (``plans.programming.program_cores``).
    verify : str
        The maps read ``settle`` s after programming, and the board clock.
    reads : str
        Conductance maps read over time, with the board clock.
    reference : str
        The maps read before the MVMs.
    mvm : str
        MVM batches: inputs, codes, outputs, the configuration, the ideal outputs.
    batches : str
        Network inference batches: predictions and layer errors.
    evaluation : str
        One event per inference time and drift compensation: its scores.
    sweeps : str
        SMU sweeps or forming steps.
    """

    programming: str | None = None
    verify: str | None = None
    reads: str | None = None
    reference: str | None = None
    mvm: str | None = None
    batches: str | None = None
    evaluation: str | None = None
    sweeps: str | None = None


@dataclass(frozen=True)
class PlanData:
    """What one plan records: its `Streams`, and its instrument's default device name
    (what runs recorded before labcim kept `DEVICE` are read with)."""

    streams: Streams
    device: str = "board"

    @property
    def program_prefix(self) -> str:
        """Prefix of its programming figures: ``"program_"`` if it programs before it
        measures, ``""`` for a programming plan."""
        return "" if self.streams.programming == PRIMARY else PROGRAM_PREFIX


PLANS: dict[str, PlanData] = {
    "tdp_program": PlanData(Streams(programming=PRIMARY, verify=VERIFY)),
    "mvm_characterization": PlanData(
        Streams(programming=PROGRAM, verify=VERIFY, reference=REFERENCE, mvm=PRIMARY)
    ),
    "retention": PlanData(Streams(programming=PROGRAM, verify=VERIFY, reads=PRIMARY)),
    "conductance_map": PlanData(Streams(reads=PRIMARY)),
    "network_inference": PlanData(
        Streams(programming=PROGRAM, verify=VERIFY, batches=PRIMARY, evaluation=EVALUATION)
    ),
    "iv_sweep": PlanData(Streams(sweeps=PRIMARY), device="smu"),
    "forming": PlanData(Streams(sweeps=PRIMARY), device="smu"),
}
"""labcim's plans by name (a lab's plans record what they like; nothing here reads them)."""


class _Key:
    """A data key of a device: ``<prefix>_<name>``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, keys: Any, owner: type) -> Any:
        return self if keys is None else f"{keys.prefix}_{self.name}"


@dataclass(frozen=True)
class CoreKeys:
    """The data keys of one core, ``<board>_core<i>_<name>``: its readings (ophyd names
    them by the device path) and the figures plans derive for it."""

    prefix: str

    conductance_map = _Key()  # (2 dpp, rows, cols) float32, uS
    conductance_mean = _Key()  # uS
    program_applied = _Key()  # pulses of the last batch
    mvm_inputs = _Key()  # (batch, rows) DAC codes
    mvm_codes = _Key()  # (batch, cols) ADC codes
    mvm_outputs = _Key()  # (batch, cols) uA
    read_mode = _Key()
    dac_bits = _Key()
    adc_bits = _Key()
    adc_gain = _Key()
    read_voltage = _Key()  # V
    adc_lsb = _Key()  # uA per ADC code
    out_of_tolerance = _Key()  # programming: cells out of tolerance at this verify read
    error_mean = _Key()  # uS
    error_std = _Key()  # uS
    error_max_abs = _Key()  # uS
    pulses = _Key()  # pulses of the iteration
    mvm_ideal = _Key()  # uA: the ideal outputs on the target weights
    mvm_ideal_readback = _Key()  # uA: on the conductances read before the MVMs


@dataclass(frozen=True)
class BoardKeys:
    """The data keys of the board itself, ``<board>_fpga_<name>``."""

    prefix: str

    clock = _Key()  # s

    def link(self, name: str) -> str:
        """A link-health reading (one of `LINK_KEYS`)."""
        if name not in LINK_KEYS:
            raise KeyError(f"{name!r} is not a link-health reading; they are {LINK_KEYS}")
        return f"{self.prefix}_{name}"


@dataclass(frozen=True)
class SMUKeys:
    """The data keys of an SMU, ``<smu>_<name>``."""

    prefix: str

    voltage = _Key()  # V, the last source value (forming)
    current = _Key()  # A, the last reading (forming)
    sweep_voltage = _Key()  # V per point of a list sweep
    sweep_current = _Key()  # A per point


@dataclass(frozen=True)
class Keys:
    """The data keys of the instrument device named ``device``."""

    device: str

    def core(self, core: int) -> CoreKeys:
        """Keys of core ``core`` of a board."""
        return CoreKeys(f"{self.device}_core{core}")

    @property
    def board(self) -> BoardKeys:
        """Keys of the board itself."""
        return BoardKeys(f"{self.device}_fpga")

    @property
    def smu(self) -> SMUKeys:
        """Keys of an SMU."""
        return SMUKeys(self.device)


def is_link_key(key: str) -> bool:
    """Whether a data key is a board's link-health reading (`LINK_KEYS`)."""
    return key.rpartition("_fpga_")[2] in LINK_KEYS and "_fpga_" in key


class RunData:
    """A run's data found by what it is: ``RunData(run).stream("verify")``,
    ``RunData(run).keys.core(0).conductance_map``.

    Parameters
    ----------
    run : Run
        A run of one of `PLANS`.

    Raises
    ------
    KeyError
        A run of a plan this module does not describe (naming it).
    """

    def __init__(self, run: Run) -> None:
        if run.plan_name not in PLANS:
            raise KeyError(f"{run.plan_name!r} is not a plan whose data labcim describes")
        self.run = run
        self.plan = PLANS[run.plan_name]
        self.keys = Keys(run.start.get(DEVICE, self.plan.device))

    def stream(self, what: str) -> Stream:
        """The stream holding ``what`` (a `Streams` field), e.g. ``"programming"``.

        Raises
        ------
        KeyError
            The plan records no such stream, or this run has none (a plan told not to
            program), naming it.
        """
        if what not in {f.name for f in fields(Streams)}:
            raise KeyError(f"{what!r} is none of {[f.name for f in fields(Streams)]}")
        name = getattr(self.plan.streams, what)
        if name is None or name not in self.run.streams:
            raise KeyError(f"{self.run.plan_name} run {self.run.number} has no {what} stream")
        return self.run.streams[name]

    def has(self, what: str) -> bool:
        """Whether the run has the stream holding ``what``."""
        name = getattr(self.plan.streams, what)
        return name is not None and name in self.run.streams

    def programming_figure(self, core: int, name: str) -> Any:
        """A programming summary figure of ``core`` (None if the run has none)."""
        key = core_figure(core, name, self.plan.program_prefix)
        return (self.run.summary or {}).get(key)


def core_figure(core: int, name: str, prefix: str = "") -> str:
    """Summary key of a per-core figure: ``core0_weight_error``, or with ``prefix``
    (`PROGRAM_PREFIX`) ``program_core0_weight_error``."""
    return f"{prefix}core{core}_{name}"


def mode_prefix(core: int, mode: str, dac: int, adc: int) -> str:
    """Summary key prefix of one MVM combination, e.g. ``core0_4phase_d8_a8_``."""
    return f"core{core}_{mode.replace('-', '')}_d{dac}_a{adc}_"


def time_prefix(t: float) -> str:
    """Summary key prefix of an inference time point (s): ``t3600s``, ``t0p5s`` (no dots
    in keys)."""
    return f"t{t:.0f}s" if float(t).is_integer() else f"t{t}s".replace(".", "p")


_CORE = re.compile(r"^(?P<program>program_)?core(?P<core>\d+)_(?P<rest>.+)$")
_MODE = re.compile(r"^(?P<phases>\d)phase_d(?P<dac>\d+)_a(?P<adc>\d+)_(?P<figure>.+)$")
_TIME = re.compile(r"^t(?P<t>\d+(?:p\d+)?)s_(?P<mode>[a-z]+)_(?P<figure>.+)$")


@dataclass(frozen=True)
class SummaryKey:
    """What a summary key names (`parse_summary_key`).

    ``core`` is None for figures of the whole run; ``programming`` marks the figures
    of a programming done before measuring; ``mode`` is ``(read mode, DAC bits, ADC
    bits)`` of an MVM combination; ``time`` and ``compensation`` name an inference
    time point (s) and drift compensation; ``figure`` is the rest.
    """

    figure: str
    core: int | None = None
    programming: bool = False
    mode: tuple[str, int, int] | None = None
    time: float | None = None
    compensation: str | None = None


def parse_summary_key(key: str) -> SummaryKey:
    """The parts of a summary key built by `core_figure`, `mode_prefix` and `time_prefix`."""
    m = _CORE.match(key)
    if m is None:
        if t := _TIME.match(key):
            time = float(t["t"].replace("p", "."))
            return SummaryKey(t["figure"], time=time, compensation=t["mode"])
        return SummaryKey(key)
    core, programming, rest = int(m["core"]), bool(m["program"]), m["rest"]
    if mode := _MODE.match(rest):
        combo = (f"{mode['phases']}-phase", int(mode["dac"]), int(mode["adc"]))
        return SummaryKey(mode["figure"], core, programming, combo)
    return SummaryKey(rest, core, programming)

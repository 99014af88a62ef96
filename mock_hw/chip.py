"""A simulated compute-in-memory chip: N crossbar cores, a clock, save/load.

The chip owns all state: the device arrays of every core (shape ``(cores, 2, dpp, rows,
cols)``), the periphery mismatch, each core's configuration, the simulated clock and the
random generator.  Every operation advances the clock by the time it would take on the
hardware, and :meth:`Chip.advance` moves it on request, so a one-month retention
experiment runs in seconds.  Every request is validated completely before any state
changes; bad requests raise :class:`~mock_hw.errors.InvalidRequestError` (or
:class:`~mock_hw.errors.SafetyLimitError`) naming the offending field and allowed range.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from drivers.protocol import MAX_CLOCK, pulse_limit_violation
from mock_hw.core import (
    ADC_GAIN_RANGE,
    MVM_TIME,
    TEMPERATURE_RANGE,
    CoreConfig,
    Crossbar,
    Periphery,
    new_periphery_state,
)
from mock_hw.devices import T_REF, DeviceModel, PulseKind, PulseLimits
from mock_hw.errors import InvalidRequestError, SafetyLimitError
from mock_hw.pcm import PCMDevice, PCMParams
from mock_hw.periphery import dac_levels
from mock_hw.rram import RRAMDevice, RRAMParams

FORMAT_VERSION = 1
"""Version of the saved-chip file format (an ``.npz`` with a JSON header)."""

PULSE_OVERHEAD = 50e-9
"""Set-up time of one programming step of the per-core programming unit (s)."""


@dataclass(frozen=True)
class ChipSpec:
    """What a chip is: its technology and geometry.

    Parameters
    ----------
    preset : str
        Name of the preset it was built from.
    device_type : str
        ``"pcm"`` or ``"rram"``.
    n_cores, rows, cols : int
        Number of cores and crossbar size of each.
    devices_per_polarity : int
        Devices per polarity of a unit cell (1 or 2).
    seed : int
        Seed of the chip's random generator.
    model_params : dict
        Device-model parameters that differ from the technology defaults.
    periphery : dict
        Periphery parameters that differ from :class:`~mock_hw.core.Periphery` defaults.
    """

    preset: str
    device_type: str
    n_cores: int
    rows: int
    cols: int
    devices_per_polarity: int
    seed: int = 0
    model_params: dict[str, Any] = field(default_factory=dict)
    periphery: dict[str, Any] = field(default_factory=dict)

    @property
    def state_shape(self) -> tuple[int, int, int, int, int]:
        """Shape of the device-state arrays: (cores, 2, dpp, rows, cols)."""
        return (self.n_cores, 2, self.devices_per_polarity, self.rows, self.cols)


PRESETS: dict[str, dict[str, Any]] = {
    # IBM HERMES: 64 cores of 256 x 256 8T4R cells (Le Gallo et al. 2023).
    "pcm-hermes": dict(device_type="pcm", n_cores=64, rows=256, cols=256, devices_per_polarity=2),
    "pcm-small": dict(device_type="pcm", n_cores=4, rows=64, cols=64, devices_per_polarity=2),
    # NeuRRAM: 48 cores of 256 x 256, one device per polarity (Wan et al. 2022).
    "rram-hfox": dict(device_type="rram", n_cores=48, rows=256, cols=256, devices_per_polarity=1),
    "rram-small": dict(device_type="rram", n_cores=4, rows=64, cols=64, devices_per_polarity=1),
}
"""Chip presets by name; any field may be overridden in :meth:`Chip.from_preset`."""

MAX_CORES, MAX_SIZE = 1024, 4096

CELL_AXIS = 2
"""Axis of the state arrays (cores, 2, dpp, rows, cols) holding the devices of a cell."""


def make_model(
    device_type: str, params: dict[str, Any], devices_per_polarity: int = 1
) -> DeviceModel:
    """Device model of ``device_type`` with ``params`` overriding its defaults.

    PCM statistics are those of a unit cell's polarity of ``devices_per_polarity``
    devices, the axis 2 of the chip's state arrays (docs/physics.md).
    """
    if device_type == "pcm":
        return PCMDevice(
            PCMParams.from_dict(params), cell_size=devices_per_polarity, cell_axis=CELL_AXIS
        )
    if device_type == "rram":
        return RRAMDevice(RRAMParams.from_dict(params))
    raise InvalidRequestError(f"device_type = {device_type!r}; allowed: ['pcm', 'rram']")


class Chip:
    """A simulated CIM chip.  Build it with :meth:`from_preset` or :meth:`load`.

    Parameters
    ----------
    spec : ChipSpec
        Technology and geometry.
    """

    def __init__(self, spec: ChipSpec) -> None:
        _check_spec(spec)
        self.spec = spec
        self.model = make_model(spec.device_type, spec.model_params, spec.devices_per_polarity)
        self.periphery = Periphery(**spec.periphery)
        self.rng = np.random.default_rng(spec.seed)
        shape = spec.state_shape
        self.state = self.model.new_state(shape, self.rng)
        self.state.update(self.model.new_wear_state(shape, self.rng))
        self.state.update(new_periphery_state(self.periphery, spec.n_cores, shape, self.rng))
        self.state["pulse_counts"] = np.zeros(shape, np.uint32)
        self.time = 0.0
        self._build_cores()

    def _build_cores(self) -> None:
        dev = {k: v for k, v in self.state.items() if k not in _CHIP_FIELDS}
        self.cores = [
            Crossbar(
                self.model,
                {k: v[c] for k, v in dev.items()},
                self.state["asym"][c],
                self.state["col_gain"][c],
                self.state["col_offset"][c],
                self.periphery,
                (self.state["inl_even"][c], self.state["inl_odd"][c]),
            )
            for c in range(self.spec.n_cores)
        ]

    @classmethod
    def from_preset(cls, name: str = "pcm-hermes", *, seed: int = 0, **overrides: Any) -> Chip:
        """Build a fresh chip from a preset.

        Parameters
        ----------
        name : str
            One of :data:`PRESETS`.
        seed : int
            Seed of every random draw of this chip.
        **overrides
            ``cores`` (alias of ``n_cores``), ``rows``, ``cols``, ``devices_per_polarity``,
            ``model_params`` (dict), ``periphery`` (dict).
        """
        return cls(cls.preset_spec(name, seed=seed, **overrides))

    @staticmethod
    def preset_spec(name: str = "pcm-hermes", *, seed: int = 0, **overrides: Any) -> ChipSpec:
        """The checked spec of the chip `from_preset` builds, without building it.

        Raises
        ------
        InvalidRequestError
            An unknown preset or option, or a geometry or seed out of range.
        """
        if name not in PRESETS:
            raise InvalidRequestError(f"unknown chip preset {name!r}; allowed: {sorted(PRESETS)}")
        if "cores" in overrides:
            overrides["n_cores"] = overrides.pop("cores")
        allowed = {"n_cores", "rows", "cols", "devices_per_polarity", "model_params", "periphery"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise InvalidRequestError(
                f"unknown chip option(s) {unknown}; allowed: {sorted(allowed)}"
            )
        fields_ = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        spec = ChipSpec(preset=name, seed=seed, **fields_)
        _check_spec(spec)
        return spec

    # -- identity and configuration ---------------------------------------------------

    @property
    def limits(self) -> PulseLimits:
        """Safe operating limits of the chip's devices."""
        return self.model.limits

    @property
    def pulse_counts(self) -> np.ndarray:
        """Pulses each device received, uint32 (cores, 2*dpp, rows, cols)."""
        s = self.spec
        return self.state["pulse_counts"].reshape(
            s.n_cores, 2 * s.devices_per_polarity, s.rows, s.cols
        )

    def identify(self) -> dict[str, Any]:
        """JSON-ready description of the chip (what the board's identify reports)."""
        s = self.spec
        return {
            "chip": s.preset,
            "device_type": s.device_type,
            "cores": s.n_cores,
            "rows": s.rows,
            "cols": s.cols,
            "devices_per_polarity": s.devices_per_polarity,
            "g_max_uS": self.model.g_max,
            "limits": {
                **self.limits.to_dict(),
                "adc_gain_min": ADC_GAIN_RANGE[0],
                "adc_gain_max": ADC_GAIN_RANGE[1],
            },
            "temperature": {
                "unit": "K",
                "min": TEMPERATURE_RANGE[0],
                "max": TEMPERATURE_RANGE[1],
                "reference": T_REF,
                "setting": "core configuration field temperature",
            },
            "seed": s.seed,
        }

    def fingerprint(self) -> str:
        """Short hash of the random generator's state: equal states, equal hashes."""
        state = json.dumps(self.rng.bit_generator.state, sort_keys=True)
        return hashlib.sha256(state.encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """What rebuilds this chip as it is now: the simulator fields of IDENTIFY.

        A chip is fully determined by its spec and the operations it has seen; every
        operation advances the clock, so a chip at clock 0 is the fresh chip of its spec,
        and two chips of one spec with equal clocks and generator fingerprints are in the
        same state (docs/protocol.md, IDENTIFY).

        Returns
        -------
        dict
            ``spec`` (the ChipSpec as a dict), ``clock`` (s), ``rng`` (`fingerprint`),
            ``configs`` (``{core index as str: CoreConfig dict}`` of the cores not at
            the default configuration).
        """
        default = CoreConfig()
        return {
            "spec": asdict(self.spec),
            "clock": self.time,
            "rng": self.fingerprint(),
            "configs": {
                str(i): xbar.config.to_dict()
                for i, xbar in enumerate(self.cores)
                if xbar.config != default
            },
        }

    def config(self, core: int) -> CoreConfig:
        """Current configuration of ``core``."""
        return self._core(core).config

    def configure(self, core: int, **changes: Any) -> CoreConfig:
        """Change configuration fields of ``core``; validated, nothing changes on error.

        A new ``temperature`` takes effect now: from here the core's devices age at its
        Arrhenius rate (docs/physics.md, Temperature).
        """
        xbar = self._core(core)
        self._set_config(xbar, xbar.config.replace(self.limits.read_voltage_max, **changes))
        return xbar.config

    def reset_config(self) -> None:
        """Restore the default configuration of every core (devices are untouched)."""
        for xbar in self.cores:
            self._set_config(xbar, CoreConfig())

    def _set_config(self, xbar: Crossbar, config: CoreConfig) -> None:
        if config.temperature != xbar.config.temperature:
            accel = self.model.time_acceleration(config.temperature)
            xbar.set_temperature(self.time, accel)
        xbar.config = config

    def adc_lsb(self, core: int) -> float:
        """MVM output current (uA) of one ADC code of ``core`` at its configuration."""
        return self._core(core).adc_lsb()

    # -- operations -------------------------------------------------------------------

    def apply_pulses(
        self,
        core: int,
        row: np.ndarray,
        col: np.ndarray,
        device: np.ndarray,
        kind: np.ndarray,
        amplitude: np.ndarray,
        width: np.ndarray,
    ) -> None:
        """Apply one programming pulse to each selected device of ``core``.

        Parameters
        ----------
        core : int
            Core index.
        row, col : array of int
            Cell coordinates.
        device : array of int
            Device within the cell, ``polarity * dpp + index`` (polarity 0 = positive).
        kind : array of int
            :class:`~mock_hw.devices.PulseKind` values.
        amplitude : array of float
            Pulse amplitude (V for RRAM, uA for PCM), within the chip's limits.
        width : array of float
            Pulse width (s), within the chip's limits.
        """
        xbar = self._core(core)
        row, col, device, kind = (
            _int_array(name, a)
            for name, a in (("row", row), ("col", col), ("device", device), ("kind", kind))
        )
        amplitude, width = _float_array("amplitude", amplitude), _float_array("width", width)
        n = len(row)
        for name, a in (
            ("col", col),
            ("device", device),
            ("kind", kind),
            ("amplitude", amplitude),
            ("width", width),
        ):
            if len(a) != n:
                raise InvalidRequestError(f"{name} has {len(a)} entries, row has {n}")
        if n == 0:
            return
        dpp = self.spec.devices_per_polarity
        _check_range("row", row, self.spec.rows)
        _check_range("col", col, self.spec.cols)
        _check_range("device", device, 2 * dpp)
        _check_kind(kind)
        if message := pulse_limit_violation(self.limits.to_dict(), kind, amplitude, width):
            raise SafetyLimitError(message)
        flat = (device * self.spec.rows + row) * self.spec.cols + col
        seen = np.zeros(2 * dpp * self.spec.rows * self.spec.cols, bool)
        seen[flat] = True  # linear-time duplicate check (np.unique sorts)
        if np.count_nonzero(seen) != n:
            raise InvalidRequestError("a device appears more than once in one pulse batch")
        index = (np.full(n, core), device // dpp, device % dpp, row, col)
        # The programming unit pulses one row's worth of devices in parallel.
        steps = math.ceil(n / self.spec.cols)
        self.time += steps * (float(width.max()) + PULSE_OVERHEAD)
        t = xbar.device_time(self.time)
        self.model.apply_pulses(self.state, index, kind, amplitude, width, t, self.rng)
        counts = self.state["pulse_counts"]
        if counts.flags.c_contiguous:
            # (cores, 2, dpp, rows, cols): a device's flat offset is its core's block plus
            # its offset in the core; one flat gather is much cheaper than two through the
            # five index arrays
            counts, at = counts.reshape(-1), flat + core * seen.size
        else:
            at = index
        counts[at] += 1
        self.model.wear(self.state, index, counts[at], self.rng)
        xbar.programmed(t)

    def read_conductance(
        self, core: int, row_start: int = 0, row_stop: int | None = None
    ) -> np.ndarray:
        """Read the conductance (uS) of every device in rows [row_start, row_stop) of ``core``.

        Returns
        -------
        ndarray, float32, shape (2*dpp, row_stop - row_start, cols)
            Device-major: index ``polarity * dpp + d``.
        """
        xbar = self._core(core)
        row_stop = self.spec.rows if row_stop is None else row_stop
        for name, v in (("row_start", row_start), ("row_stop", row_stop)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InvalidRequestError(f"{name} = {v!r} must be an integer")
        if not 0 <= row_start < row_stop <= self.spec.rows:
            raise InvalidRequestError(
                f"row range [{row_start}, {row_stop}) is not inside [0, {self.spec.rows})"
            )
        n_rows = row_stop - row_start
        self.time += n_rows * 2 * self.spec.devices_per_polarity * self.model.t_read
        view = {k: v[:, :, row_start:row_stop] for k, v in xbar.devices.items()}
        t = xbar.device_time(self.time)
        g = self.model.conductance(view, t, self.rng, read_noise=xbar.noise_factor)
        return g.reshape(-1, n_rows, self.spec.cols).astype(np.float32)

    def mvm(self, core: int, inputs: np.ndarray) -> np.ndarray:
        """Run a batch of MVMs on ``core``; returns ADC codes, int32 (batch, cols).

        Parameters
        ----------
        core : int
            Core index.
        inputs : array of int, shape (batch, rows)
            DAC codes, ``|x| <= 2**(dac_bits-1) - 1`` of the core's configuration.
        """
        xbar = self._core(core)
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.spec.rows or x.shape[0] < 1:
            raise InvalidRequestError(
                f"inputs must have shape (batch >= 1, {self.spec.rows}), got {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.integer):
            raise InvalidRequestError(f"inputs must be integer DAC codes, got dtype {x.dtype}")
        top = dac_levels(xbar.config.dac_bits)
        # two reductions, no temporary; np.abs would also wrap -128 of an int8 batch
        if x.size and (int(x.min()) < -top or int(x.max()) > top):
            raise InvalidRequestError(
                f"input codes must be within +-{top} for dac_bits = {xbar.config.dac_bits}"
            )
        codes = xbar.mvm(x, self.time, self.rng)
        self.time += len(x) * MVM_TIME[xbar.config.read_mode]
        return codes

    def advance(self, seconds: float) -> float:
        """Move the simulated clock forward by ``seconds`` (s); returns the new time.

        The clock never passes :data:`~drivers.protocol.MAX_CLOCK`: a step that would is
        refused, so no sum of requests makes it infinite.
        """
        if not isinstance(seconds, (int, float, np.floating, np.integer)) or not (
            math.isfinite(seconds) and seconds >= 0
        ):
            raise InvalidRequestError(f"seconds = {seconds!r} must be finite and >= 0")
        return self.advance_to(self.time + float(seconds))

    def advance_to(self, target: float) -> float:
        """Move the simulated clock forward to ``target`` (s); returns the new time.

        A target the clock has already reached changes nothing, so asking twice for the
        same time (a replayed request) advances the clock once.
        """
        if not isinstance(target, (int, float, np.floating, np.integer)) or not (
            math.isfinite(target) and 0 <= target <= MAX_CLOCK
        ):
            raise InvalidRequestError(
                f"clock target = {target!r} s must be finite and within [0, {MAX_CLOCK:g}] s"
            )
        self.time = max(self.time, float(target))
        return self.time

    # -- persistence ------------------------------------------------------------------

    def save(self, path: str | PathLike[str]) -> None:
        """Save the complete chip state to ``path`` (``.npz``; no pickle)."""
        header = {
            "format": "labcim-chip",
            "version": FORMAT_VERSION,
            "spec": asdict(self.spec),
            "time": self.time,
            "rng": self.rng.bit_generator.state,
            "configs": [x.config.to_dict() for x in self.cores],
            "last_pulse": [x.last_pulse_time for x in self.cores],
            "thermal": [list(x.thermal) for x in self.cores],
        }
        raw = np.frombuffer(json.dumps(header).encode(), np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, _header=raw, **self.state)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Chip:
        """Load a chip saved with :meth:`save`; it continues exactly where it stopped."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(data["_header"].tobytes())
                arrays = {k: data[k] for k in data.files if k != "_header"}
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidRequestError(f"{path}: not a saved labcim chip ({exc})") from exc
        if header.get("format") != "labcim-chip" or header.get("version") != FORMAT_VERSION:
            raise InvalidRequestError(f"{path}: not a labcim chip file of version {FORMAT_VERSION}")
        chip = cls.__new__(cls)
        chip.spec = ChipSpec(**header["spec"])
        chip.model = make_model(
            chip.spec.device_type, chip.spec.model_params, chip.spec.devices_per_polarity
        )
        chip.periphery = Periphery(**chip.spec.periphery)
        chip.rng = np.random.default_rng()
        chip.rng.bit_generator.state = header["rng"]
        for key in ("inl_even", "inl_odd"):  # files from before the ADC had an INL
            arrays.setdefault(key, np.zeros((chip.spec.n_cores, chip.spec.cols), np.float32))
        chip.state = arrays
        chip.time = float(header["time"])
        chip._build_cores()
        thermal = header.get("thermal", [(0.0, 0.0, 1.0)] * chip.spec.n_cores)
        for xbar, cfg, t, th in zip(
            chip.cores, header["configs"], header["last_pulse"], thermal, strict=True
        ):
            xbar.config = CoreConfig(**cfg)
            xbar.last_pulse_time = t
            xbar.thermal = tuple(th)
        return chip

    def _core(self, core: int) -> Crossbar:
        if isinstance(core, bool) or not isinstance(core, (int, np.integer)):
            raise InvalidRequestError(f"core = {core!r} must be an integer")
        if not 0 <= core < self.spec.n_cores:
            raise InvalidRequestError(
                f"core {core} does not exist; cores are 0..{self.spec.n_cores - 1}"
            )
        return self.cores[core]


_CHIP_FIELDS = ("asym", "col_gain", "col_offset", "inl_even", "inl_odd", "pulse_counts")
"""State arrays owned by the chip rather than the device model."""


def _check_spec(spec: ChipSpec) -> None:
    if spec.device_type not in ("pcm", "rram"):
        raise InvalidRequestError(f"device_type = {spec.device_type!r}; allowed: ['pcm', 'rram']")
    for name, top in (("n_cores", MAX_CORES), ("rows", MAX_SIZE), ("cols", MAX_SIZE)):
        v = getattr(spec, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
            raise InvalidRequestError(f"{name} = {v!r} must be an integer in [1, {top}]")
    if spec.devices_per_polarity not in (1, 2):
        raise InvalidRequestError(
            f"devices_per_polarity = {spec.devices_per_polarity!r}; allowed: [1, 2]"
        )
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise InvalidRequestError(f"seed = {spec.seed!r} must be a non-negative integer")


def _int_array(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise InvalidRequestError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidRequestError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _float_array(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise InvalidRequestError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size and not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidRequestError(f"{name} must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    # A NaN or inf makes the sum non-finite (so does an overflow, which the exact check
    # below then clears): one reduction and no temporary for a valid batch.
    if not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
        raise InvalidRequestError(
            f"{name} contains NaN or inf at index {int(np.argmin(np.isfinite(arr)))}"
        )
    return arr


def _check_range(name: str, a: np.ndarray, n: int) -> None:
    # Two reductions, no temporary; the index of the first bad entry only on failure.
    if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
        i = int(np.argmax((a < 0) | (a >= n)))
        raise InvalidRequestError(f"{name}[{i}] = {a[i]} is outside [0, {n})")


def _check_kind(kind: np.ndarray) -> None:
    allowed = [int(k) for k in PulseKind]
    lo, hi = min(allowed), max(allowed)
    contiguous = len(allowed) == hi - lo + 1  # then two reductions are the membership test
    if not kind.size or (contiguous and lo <= int(kind.min()) and int(kind.max()) <= hi):
        return
    bad = ~np.isin(kind, allowed)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidRequestError(
            f"kind[{i}] = {kind[i]} is not a pulse kind; allowed: "
            + ", ".join(f"{int(k)} ({k.name})" for k in PulseKind)
        )

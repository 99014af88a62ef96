"""``CIMCore``: one crossbar core of the chip on the test board, as an ophyd device.

Device tree of a core named ``board_core0`` (signal names in brackets)::

    core0.read_voltage, dac_bits, adc_bits, adc_gain, read_mode, ir_drop   config, settable
    core0.adc_lsb                 [board_core0_adc_lsb]  config, uA per ADC code
    core0.program.set(pulses)     apply a pulse batch; .applied  pulses of the last batch
    core0.conductance.trigger()   .map (2*dpp, rows, cols) float32 uS; .mean (hinted);
                                  .request  operation id of the next read (0 = none)
    core0.mvm.inputs.set(x)       .codes (batch, cols) int32; .outputs uA; .mean_abs (hinted);
                                  x a WindowedInputs: the rows and columns of a window

Operation ids make what bluesky replays after a pause harmless: a pulse batch carrying
``op_id`` (an attribute or key of the batch) is applied once however often it is set, a
read named by ``conductance.request`` and an MVM whose inputs carry ``op_id`` return the
data of their first execution when triggered again.  ``stop()`` stops the operation in
progress between two frames (:meth:`ChipTestBoard.stop`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device

from drivers import protocol
from drivers.board import BoardLimitError
from drivers.protocol import Status
from labcim.devices.signals import (
    ArrayReadback,
    ArraySetting,
    DriverStatus,
    OperationRequest,
    Readback,
    Setting,
    StopRequest,
)

PULSE_FIELDS = ("row", "col", "device", "kind", "amplitude", "width")
"""Arrays of a pulse batch: cell, device in the cell (``polarity * dpp + index``), kind
(0 SET, 1 RESET, 2 FORM), amplitude (V or uA, the chip's ``amplitude_unit``), width (s)."""

CORE_SETTINGS = ("read_voltage", "dac_bits", "adc_bits", "adc_gain", "read_mode", "ir_drop")
"""The settable configuration of a core (its signals of kind config, one per field of the
board's GET/SET_CONFIG); plans save and restore them (``plans.stubs.settings``)."""

ADC_LSB_KEY = "adc_lsb_uA"
"""Configuration field in which a board reports the output current of one ADC code."""


class CoreSetting(Setting):
    """One field of the core's board configuration (its attribute name is the field)."""

    def write(self, value: Any) -> None:
        self.parent.configure(**{self.attr_name: value})


def op_id_of(value: Any, field: str = "op_id") -> int:
    """The operation id a device argument carries (attribute or key ``field``), else 0."""
    if isinstance(value, Mapping):
        return int(value.get(field, 0))
    return int(getattr(value, field, 0))


class ProgrammingInterface(Device):
    """Applies pulse batches: ``set(batch)`` finishes when the board acknowledges.

    The batch is a mapping or an object with the arrays :data:`PULSE_FIELDS`, and
    optionally ``op_id`` (u64): the board applies a batch with an id once, however often
    it is set.  It is checked against the chip's geometry and safe limits before
    anything is sent.  A batch that also carries ``verify_op_id`` (u64, an attribute or
    key, not 0) is followed by a verify read of the core's conductance under that id, in the
    same status: ``conductance.map`` then holds the map read right after the pulses,
    as after ``conductance.trigger()``, at one status round trip instead of two.
    """

    applied = Cpt(Readback, value=0, kind="normal")

    def set(self, pulses: Any, *, timeout: float | None = None) -> DriverStatus:
        """Apply ``pulses`` (see :data:`PULSE_FIELDS`); raises on a bad batch."""
        arrays = self.parent.check_pulses(pulses)
        op_id = op_id_of(pulses)
        verify_id = op_id_of(pulses, "verify_op_id")

        def work(stop: StopRequest) -> None:
            client = self.root.client
            applied = client.apply_pulses(self.parent.index, *arrays, op_id=op_id, cancel=stop)
            self.applied.update(applied)
            if verify_id:
                self.parent.conductance.measure(verify_id, stop)

        return self.root.run_stoppable(self, work, timeout=timeout)

    def stop(self, *, success: bool = False) -> None:
        """Stop the batch between two frames (:meth:`ChipTestBoard.stop`)."""
        self.root.stop(success=success)


class ConductanceMap(Device):
    """Conductance of every device of the core, read on ``trigger()``.

    ``map`` is device-major: index ``polarity * devices_per_polarity + d`` (polarity 0
    positive), then row, column; ``mean`` is its mean, for plots.
    """

    map = Cpt(ArrayReadback, dtype="float32", units="uS", kind="normal")
    mean = Cpt(Readback, units="uS", kind="hinted")
    request = Cpt(OperationRequest, kind="omitted")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        chip = self.root.identity
        self.map.declare((2 * chip.devices_per_polarity, chip.rows, chip.cols))

    def measure(self, op_id: int = 0, stop: StopRequest | None = None) -> None:
        """Read the map over the link (blocking) and update the signals."""
        g = self.root.client.read_conductance(self.parent.index, op_id=op_id, cancel=stop)
        self.map.update(g)
        self.mean.update(float(g.mean()))

    def trigger(self) -> DriverStatus:
        op_id = self.request.take()
        return self.root.run_stoppable(self, lambda stop: self.measure(op_id, stop))

    def stop(self, *, success: bool = False) -> None:
        """Stop the read between two frames (:meth:`ChipTestBoard.stop`)."""
        self.root.stop(success=success)


class WindowedInputs:
    """Input codes of an MVM on a window of a core: what :class:`InputBatch` takes to
    drive rows [row_start, row_start + k) only (the others at 0 V) and read columns
    [col_start, col_stop) only; the board sends nothing else (`BoardClient.mvm`).

    Parameters
    ----------
    codes : array of int, shape (batch, k)
        DAC codes of the window's rows.
    row_start, col_start : int
        First row driven, first column read.
    col_stop : int, optional
        End of the columns read; None: the last column.
    op_id : int
        Operation id of the MVM (0: none), as :func:`op_id_of` reads it.
    """

    def __init__(
        self,
        codes: np.ndarray,
        row_start: int = 0,
        col_start: int = 0,
        col_stop: int | None = None,
        op_id: int = 0,
    ) -> None:
        self.codes = codes
        self.row_start, self.col_start, self.col_stop = row_start, col_start, col_stop
        self.op_id = op_id

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.array(self.codes, dtype, copy=copy)

    def __repr__(self) -> str:
        return (
            f"WindowedInputs(shape={np.shape(self.codes)}, row_start={self.row_start}, "
            f"col_start={self.col_start}, col_stop={self.col_stop})"
        )


class InputBatch(ArraySetting):
    """A batch of MVM input vectors (DAC codes), checked when set; kept as int16.

    Shape (batch, rows), integers with ``|x| <= 2**(dac_bits - 1) - 1`` at the core's
    current ``dac_bits``.  A value with an ``op_id`` attribute (u64) names the next MVM
    (:class:`MVMReadout`); a :class:`WindowedInputs` (shape (batch, k)) runs it on a
    window of the core, kept in :attr:`window` until the next value (a plain array:
    the whole core).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dtype="int16", ndim=2, **kwargs)
        self.op_id = 0
        self.window: tuple[int, int, int | None] = (0, 0, None)
        """(row_start, col_start, col_stop) of the inputs held; col_stop None: the last."""

    def put(self, value: Any, **kwargs: Any) -> None:
        self.check_value(value)
        self.window, self.op_id = self.window_of(value), op_id_of(value)
        # ArraySetting.put without its check_value: the inputs were checked just now.
        super(ArraySetting, self).put(np.array(value, self.dtype), force=True, **kwargs)

    @staticmethod
    def window_of(value: Any) -> tuple[int, int, int | None]:
        """The window a value asks for: a :class:`WindowedInputs`' own, else the core."""
        if not isinstance(value, WindowedInputs):
            return 0, 0, None
        stop = None if value.col_stop is None else int(value.col_stop)
        return int(value.row_start), int(value.col_start), stop

    @property
    def columns(self) -> tuple[int, int]:
        """[col_start, col_stop) the MVM of the inputs held reads."""
        _, start, stop = self.window
        return start, self.root.identity.cols if stop is None else stop

    def take_op_id(self) -> int:
        """The id for the MVM starting now; later MVMs of the same inputs have none."""
        op_id, self.op_id = self.op_id, 0
        return op_id

    def stop(self, *, success: bool = False) -> None:
        """Stop the MVM in progress (bluesky stops what it set on a pause)."""
        self.root.stop(success=success)

    def check_value(self, value: Any) -> None:
        chip = self.root.identity
        x = np.asarray(value)
        full = not isinstance(value, WindowedInputs)
        if x.ndim != 2 or x.shape[0] < 1 or (full and x.shape[1] != chip.rows):
            raise ValueError(
                f"{self.name}: inputs must have shape (batch >= 1, {chip.rows}), got {x.shape}"
            )
        row_start, col_start, col_stop = self.window_of(value)
        col_stop = chip.cols if col_stop is None else col_stop
        where = (row_start, x.shape[1], col_start, col_stop)
        if message := protocol.mvm_window_violation(chip.rows, chip.cols, *where):
            raise ValueError(f"{self.name}: {message}")
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{self.name}: inputs must be integer DAC codes, got {x.dtype}")
        bits = self.parent.parent.dac_bits.get()
        top = 2 ** (bits - 1) - 1
        if np.abs(x.astype(np.int64)).max() > top:
            raise ValueError(
                f"{self.name}: input codes must be within +-{top} for dac_bits = {bits}"
            )


class MVMReadout(Device):
    """Matrix-vector multiplication: set ``inputs``, ``trigger()``, read the outputs.

    ``codes`` are the ADC codes, ``outputs`` the same in uA (codes x ``adc_lsb``), and
    ``mean_abs`` the mean of ``|outputs|`` for plots.  Keep the batch size fixed within a
    run: the descriptor records the shapes of the first reading.
    """

    inputs = Cpt(InputBatch, kind="normal")
    codes = Cpt(ArrayReadback, dtype="int32", kind="normal")
    outputs = Cpt(ArrayReadback, dtype="float64", units="uA", kind="normal")
    mean_abs = Cpt(Readback, units="uA", kind="hinted")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs.subscribe(self._declare_shapes, run=False)
        self._declare_shapes(self.inputs.get())

    def _declare_shapes(self, value: np.ndarray, **kwargs: Any) -> None:
        start, stop = self.inputs.columns
        shape = (len(value), stop - start)
        self.codes.declare(shape)
        self.outputs.declare(shape)

    @property
    def ready(self) -> bool:
        """Whether inputs were set."""
        return self.inputs.get().size > 0

    def measure(self, op_id: int = 0, stop: StopRequest | None = None) -> None:
        """Run the MVM of the inputs over the link (blocking) and update the signals."""
        x = self.inputs.get()
        row_start, col_start, col_stop = self.inputs.window
        codes = self.root.client.mvm(
            self.parent.index,
            x,
            row_start=row_start,
            col_start=col_start,
            col_stop=col_stop,
            op_id=op_id,
            cancel=stop,
        )
        outputs = codes * self.parent.adc_lsb.get()
        self.codes.update(codes)
        self.outputs.update(outputs)
        self.mean_abs.update(float(np.abs(outputs).mean()))

    def trigger(self) -> DriverStatus:
        if not self.ready:  # fail before starting anything
            raise ValueError(f"{self.name}: set {self.inputs.name} before triggering")
        op_id = self.inputs.take_op_id()
        return self.root.run_stoppable(self, lambda stop: self.measure(op_id, stop))

    def stop(self, *, success: bool = False) -> None:
        """Stop the MVM between two frames (:meth:`ChipTestBoard.stop`)."""
        self.root.stop(success=success)


class CIMCore(Device):
    """One core of the chip.  Built by ``ChipTestBoard``; ``index`` is the core number.

    ``trigger()`` reads the conductance map and, if inputs are set, runs the MVM, in one
    status.  Configuration signals are settable (``mv(core.adc_bits, 6)``) and can be
    staged (``core.stage_sigs["read_mode"] = "1-phase"``).
    """

    read_voltage = Cpt(CoreSetting, units="V", kind="config")
    dac_bits = Cpt(CoreSetting, value=0, kind="config")
    adc_bits = Cpt(CoreSetting, value=0, kind="config")
    adc_gain = Cpt(CoreSetting, kind="config")
    read_mode = Cpt(CoreSetting, value="", kind="config")
    ir_drop = Cpt(CoreSetting, value=False, kind="config")
    adc_lsb = Cpt(Readback, units="uA", kind="config")

    program = Cpt(ProgrammingInterface, kind="normal")
    conductance = Cpt(ConductanceMap, kind="normal")
    mvm = Cpt(MVMReadout, kind="normal")

    def __init__(self, *args: Any, index: int, **kwargs: Any) -> None:
        self.index = index
        super().__init__(*args, **kwargs)
        self.apply_config(self.root.client.get_config(index))

    def configure(self, **changes: Any) -> None:
        """Send configuration changes to the board (blocking); update the signals."""
        self.apply_config(self.root.client.set_config(self.index, **changes))

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Update the configuration signals from the board's reply."""
        missing = [k for k in CORE_SETTINGS if k not in config]
        if missing:
            raise KeyError(f"{self.name}: the board's configuration lacks {missing}")
        for key in CORE_SETTINGS:
            getattr(self, key).update(config[key])
        # Boards that do not report their ADC step give NaN outputs (codes stay valid).
        self.adc_lsb.update(float(config.get(ADC_LSB_KEY, np.nan)))

    def check_pulses(self, pulses: Any) -> list[np.ndarray]:
        """The arrays of a pulse batch, checked against geometry and safe limits.

        Raises
        ------
        ValueError
            Missing or unequal arrays, indices outside the core, unknown pulse kinds.
        BoardLimitError
            A pulse outside the limits the board reported.
        """
        get = pulses.get if isinstance(pulses, Mapping) else lambda k: getattr(pulses, k, None)
        missing = [k for k in PULSE_FIELDS if get(k) is None]
        if missing:
            raise ValueError(f"{self.name}: pulse batch lacks {missing}; needs {PULSE_FIELDS}")
        arrays = [np.asarray(get(k)) for k in PULSE_FIELDS]
        n = len(arrays[0]) if arrays[0].ndim == 1 else -1
        if any(a.ndim != 1 or len(a) != n for a in arrays):
            shapes = {k: a.shape for k, a in zip(PULSE_FIELDS, arrays, strict=True)}
            raise ValueError(f"{self.name}: pulse arrays must be 1-D of equal length: {shapes}")
        chip = self.root.identity
        bounds = {
            "row": chip.rows,
            "col": chip.cols,
            "device": 2 * chip.devices_per_polarity,
            "kind": len(protocol.PULSE_KIND_LIMIT),
        }
        for name, a in zip(PULSE_FIELDS, arrays, strict=False):
            if name not in bounds:
                continue
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{self.name}: {name} must be integers, got {a.dtype}")
            bad = (a < 0) | (a >= bounds[name])
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{self.name}: {name}[{i}] = {a[i]} is outside [0, {bounds[name]})"
                )
        kind, amplitude, width = arrays[3], arrays[4].astype(float), arrays[5].astype(float)
        if message := protocol.pulse_limit_violation(chip.limits, kind, amplitude, width):
            raise BoardLimitError(
                f"{self.name}: refused before sending: {message}", Status.OUT_OF_LIMITS
            )
        return arrays

    def trigger(self) -> DriverStatus:
        read_id = self.conductance.request.take()
        mvm_id = self.mvm.inputs.take_op_id() if self.mvm.ready else 0

        def work(stop: StopRequest) -> None:
            self.conductance.measure(read_id, stop)
            if self.mvm.ready:
                self.mvm.measure(mvm_id, stop)

        return self.root.run_stoppable(self, work)

    def stop(self, *, success: bool = False) -> None:
        """Stop the core's operation in progress (:meth:`ChipTestBoard.stop`)."""
        self.root.stop(success=success)

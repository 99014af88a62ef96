"""``SMU``: a source-measure unit (``drivers.smu.SourceMeter``) as an ophyd device.

Device tree of an SMU named ``smu``::

    smu.idn             identification string (config)
    smu.voltage         source level (V), settable: ``mv(smu.voltage, 0.5)`` (hinted)
    smu.current_limit   compliance (A), settable (config)
    smu.output          output on/off, settable (config)
    smu.current         current measured on ``trigger()`` (A, hinted)
    smu.sweep           points (V) settable; delay (s, config); trigger() runs a list
                        sweep; voltage (V readback) and current (A) arrays; request:
                        operation id of the next sweep; kind omitted

A sweep switches the device it sweeps (SET, RESET), so a sweep bluesky replays after a
pause must not run again: a trigger carrying the operation id of the last sweep
publishes that sweep's readings instead of sweeping.

The instrument cannot be asked for its settings, so each readback is the value the
device last wrote; ``labcim.connect_smu`` resets the instrument to make them true.  A
setting is sent only when it changes: with the output on, the simulated (and many a
real) SMU re-applies its source at every setting command, so a setting bluesky replays
after a pause would otherwise expose the device again.

``stop()`` on the SMU or on any of its settings (bluesky stops what a plan set when it
pauses at once or aborts) aborts a running sweep: the instrument is told to stop it
within ``drivers.smu.SWEEP_POLL`` s, instead of sweeping the device to the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device

from drivers.smu import SMUAbortedError, SMULimitError, SourceMeter
from labcim.devices.signals import (
    ArrayReadback,
    ArraySetting,
    DriverStatus,
    DriverWorker,
    OperationRequest,
    Readback,
    Setting,
    StopRequests,
    UnitSignal,
)


class _StopsTheSweep:
    """``stop()`` of a part of the SMU: bluesky stops what a plan set, and stopping any
    part aborts the sweep in progress (:meth:`SMU.stop`)."""

    def stop(self, *, success: bool = False) -> None:
        self.root.stop(success=success)


class SMUSetting(_StopsTheSweep, Setting):
    """A setting written by the driver method named ``method``.

    Parameters
    ----------
    method : str
        Name of the ``SourceMeter`` method that takes the value.
    """

    def __init__(self, *, method: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = method

    def write(self, value: Any) -> None:
        if value != self.get():  # see SMU: the instrument already has this value
            getattr(self.root.driver, self.method)(value)
        self.update(value)


class OutputSetting(_StopsTheSweep, Setting):
    """Output state: any truthy value switches it on; the readback is a bool."""

    def write(self, value: Any) -> None:
        if bool(value) != self.get():  # see SMU: the instrument already has this value
            self.root.driver.output(bool(value))
        self.update(bool(value))


class SweepPoints(_StopsTheSweep, ArraySetting):
    """Voltages (V) of a list sweep, 1-D, finite, within the setup's ``max_voltage``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dtype="float64", ndim=1, units="V", **kwargs)

    def check_value(self, value: Any) -> None:
        v = np.asarray(value, dtype=float)
        top = self.root.driver.max_voltage
        if v.ndim != 1 or len(v) < 1:
            raise ValueError(f"{self.name}: sweep points must be a non-empty 1-D array")
        if not np.all(np.isfinite(v) & (np.abs(v) <= top)):
            worst = float(np.max(np.abs(v)))
            raise SMULimitError(
                f"{self.name}: sweep points must be finite and within the safe limit "
                f"max_voltage={top} V (largest |v| = {worst} V)"
            )


class SMUSweep(_StopsTheSweep, Device):
    """A list sweep: set ``points``, ``trigger()``, read ``voltage`` and ``current``.

    The output is left on at the last point (the parent's readbacks say so).  A trigger
    whose ``request`` names the last sweep done (the same points) sweeps nothing and
    publishes that sweep's readings again.
    """

    points = Cpt(SweepPoints, kind="normal")
    delay = Cpt(UnitSignal, value=0.0, units="s", kind="config")
    voltage = Cpt(ArrayReadback, dtype="float64", units="V", kind="normal")
    current = Cpt(ArrayReadback, dtype="float64", units="A", kind="normal")
    request = Cpt(OperationRequest, kind="omitted")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.points.subscribe(self._declare_shapes, run=False)
        self._last: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _declare_shapes(self, value: np.ndarray, **kwargs: Any) -> None:
        self.voltage.declare((len(value),))
        self.current.declare((len(value),))

    def trigger(self) -> DriverStatus:
        points = self.points.get()
        if not points.size:  # fail before starting anything
            raise ValueError(f"{self.name}: set {self.points.name} before triggering")

        op_id = self.request.take()

        def work(stop: Any) -> None:
            last = self._last
            if op_id and last is not None and last[0] == op_id and np.array_equal(last[1], points):
                v, i = last[2], last[3]  # replayed: this sweep already switched the device
            else:
                try:
                    v, i = self.root.driver.list_sweep(points, self.delay.get(), cancel=stop)
                except SMUAbortedError:
                    # The output is on, at a level somewhere along the sweep: say so.
                    self.parent.voltage.update(float("nan"))
                    self.parent.output.update(True)
                    raise
                self._last = (op_id, points, v, i) if op_id else None
            self.voltage.update(v)
            self.current.update(i)
            self.parent.voltage.update(float(points[-1]))
            self.parent.output.update(True)

        return self.root.run_stoppable(self, work)


class SMU(Device):
    """A source-measure unit.  Use :func:`labcim.connect_smu` to get one.

    Parameters
    ----------
    driver : SourceMeter
        An open driver, freshly reset; the device owns it from now on (:meth:`close`).
    current_limit : float
        The current limit (A) the instrument has now.
    name : str
        Prefix of every signal name.
    status_timeout : float
        Backstop (s) of every status.
    """

    idn = Cpt(Readback, value="", kind="config")
    voltage = Cpt(SMUSetting, method="source_voltage", units="V", kind="hinted")
    current_limit = Cpt(SMUSetting, method="set_current_limit", units="A", kind="config")
    output = Cpt(OutputSetting, value=False, kind="config")
    current = Cpt(Readback, units="A", kind="hinted")
    sweep = Cpt(SMUSweep, kind="omitted")

    def __init__(
        self,
        driver: SourceMeter,
        *,
        current_limit: float,
        name: str = "smu",
        status_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        self.driver = driver
        self.status_timeout = status_timeout
        self.worker = DriverWorker(name)
        self.stops = StopRequests()
        super().__init__(name=name, **kwargs)
        self.idn.update(driver.identify())
        self.voltage.update(0.0)
        self.current_limit.update(current_limit)

    def run(self, obj: Any, work: Any, *, timeout: float | None = None) -> DriverStatus:
        """Run ``work`` (driver calls) in the SMU's worker thread; the status fails with its
        exception."""
        return self.worker.run(
            obj, work, timeout=self.status_timeout if timeout is None else timeout
        )

    def run_stoppable(self, obj: Any, work: Any, *, timeout: float | None = None) -> DriverStatus:
        """Like :meth:`run`, for ``work(stop)`` whose driver calls check the flag ``stop``
        (a `StopRequest`): :meth:`stop` ends it there."""
        return self.stops.run(
            self.worker,
            obj,
            work,
            SMUAbortedError,
            timeout=self.status_timeout if timeout is None else timeout,
        )

    def stop(self, *, success: bool = False) -> None:
        """Abort every stoppable operation queued or running (a sweep).

        With ``success`` (bluesky's pause and suspension) their statuses finish, as the
        sweep will be replayed; otherwise they fail with ``SMUAbortedError``.  The
        output stays on at the level the sweep had reached, until the plan's clean-up
        (0 V, output off).
        """
        self.stops.stop_all(success)

    def trigger(self) -> DriverStatus:
        """Measure the current once."""
        return self.run(self, lambda: self.current.update(self.root.driver.measure_current()))

    def close(self) -> None:
        """Stop the worker thread and close the VISA session."""
        self.worker.close()
        self.driver.close()

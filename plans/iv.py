"""Single-device I-V plans with a source-measure unit: bipolar sweeps and forming.

Both check every voltage and current limit before the output is switched on and end
with the source at 0 V and the output off, whatever happens (``finalize_wrapper``).
Voltages are checked against the setup's ``max_voltage`` by the SMU device itself
(setting ``smu.sweep.points`` sends nothing), current limits against ``max_current``
by the driver before it writes the limit, which happens with the output off.
"""

import math
from typing import Annotated, Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable

from labcim.characterization import bipolar_branches, first_crossing, forming_steps
from labcim.plan_args import EXTRA_METADATA, Integer, NonNegative, Number, checks_together
from labcim.plan_data import BRANCH, CYCLE, DEVICE
from labcim.progress import EventProgress
from plans.stubs import (
    Plan,
    checkpoint,
    derived,
    event,
    extra_metadata,
    record,
    summary_stream,
    trigger_wait,
)

COMPLIANCE_SHARE = 0.9
"""A reading counts as at the current limit above this share of it."""


def _check_number(name: str, value: Any, *, positive: bool = False) -> float:
    return Number(positive)(name, value)


def _check_count(name: str, value: Any, low: int) -> int:
    return Integer(low)(name, value)


def safe_off(smu: Any) -> Plan:
    """Source 0 V, then switch the output off."""
    yield from bps.mv(smu.voltage, 0.0)
    yield from bps.mv(smu.output, False)


def check_voltages(smu: Any, voltages: dict[str, tuple[float, np.ndarray]]) -> Plan:
    """Check voltage lists (V) against the SMU's safe limit; nothing is sent.

    ``voltages`` maps the plan argument each list comes from to ``(its value, the
    list)``, so that a refusal names what the user gave.

    Raises
    ------
    ValueError
        ``SMULimitError: v_set = 12.0 V: sweep points must be ... within +-5.0 V``
        (the device's refusal, naming the argument).
    """
    for name, (given, v) in voltages.items():
        try:
            yield from bps.abs_set(smu.sweep.points, v, wait=True)
        except Exception as exc:
            raise _refusal(exc, f"{name} = {given} V") from exc


def check_current_limit(smu: Any, limits: dict[str, float]) -> Plan:
    """Write each current limit (A, by the plan argument that gives it), the largest
    last: the driver refuses one above the setup's ``max_current`` before sending;
    written with the output off, it applies nothing.

    Raises
    ------
    ValueError
        The driver's ``SMULimitError``, naming the argument.
    """
    for name, limit in sorted(limits.items(), key=lambda item: item[1]):
        try:
            yield from bps.mv(smu.current_limit, limit)
        except Exception as exc:
            raise _refusal(exc, f"{name} = {limit} A") from exc


def _refusal(exc: Exception, given: str) -> Exception:
    """The refusal of the device or driver (the ``ValueError``, e.g. ``SMULimitError``,
    a failed status wraps) as the same type, its message starting with ``given``, the
    argument as the user gave it, rather than the signal or instrument it came through;
    ``exc`` itself if nothing refused a value."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ValueError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return exc
    return type(cause)(f"{given}: {str(cause).rpartition(': ')[2]}")


def iv_sweep(
    smu: Readable,
    v_set: Annotated[float, Number(positive=True)],
    v_reset: float,
    points: Annotated[int, Integer(2)] = 21,
    current_limit: Annotated[float, Number(positive=True)] = 100e-6,
    reset_current_limit: Annotated[float | None, Number(positive=True)] = None,
    cycles: Annotated[int, Integer(1)] = 1,
    delay: Annotated[float, NonNegative("s")] = 0.0,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Bipolar I-V sweeps: 0 -> ``v_set`` -> 0, then 0 -> ``v_reset`` -> 0, ``cycles`` times.

    Each branch is one list sweep with its own current limit, changed at 0 V between
    branches (RRAM resets need a higher limit than the one that set it).

    Parameters
    ----------
    smu : SMU
        The source-measure unit (``labcim.connect_smu``).
    v_set : float
        Peak voltage of the SET branch (V), > 0.
    v_reset : float
        Peak voltage of the RESET branch (V), < 0.
    points : int
        Points from 0 to the peak (each branch has ``2 * points - 1``).
    current_limit : float
        Current limit of the SET branch (A).
    reset_current_limit : float, optional
        Current limit of the RESET branch (A); default ``current_limit``.
    cycles : int
        Number of SET + RESET cycles.
    delay : float
        Delay before each reading (s).
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    primary
        One event per branch: ``branch`` (0 SET, 1 RESET), ``cycle``, the current limit
        (A) and the sweep's programmed points, source readback (V) and current (A).
    summary
        Arrays over cycles: ``set_i_max``, ``reset_i_max`` (A, largest |I| of each
        branch), ``set_v_limit`` (V: first voltage of the SET branch at the current
        limit, NaN if never), ``g_on``, ``g_off`` (uS, |I/V| at the last nonzero point
        of the SET and RESET branches, on their way back to 0 V).

    Raises
    ------
    ValueError
        Before anything is sent: a non-finite value, wrong signs, a voltage beyond the
        setup's ``max_voltage`` or a current limit beyond its ``max_current``
        (``drivers.smu.SMULimitError``).
    """
    v_set = _check_number("v_set", v_set, positive=True)
    v_reset = -_check_number("v_reset", -v_reset, positive=True)
    points = _check_count("points", points, 2)
    cycles = _check_count("cycles", cycles, 1)
    i_set = _check_number("current_limit", current_limit, positive=True)
    i_reset = (
        i_set
        if reset_current_limit is None
        else _check_number("reset_current_limit", reset_current_limit, positive=True)
    )
    delay = NonNegative("s")("delay", delay)
    up, down = bipolar_branches(v_set, v_reset, points)
    branch, cycle = derived(BRANCH, 0), derived(CYCLE, 0)
    objs = [
        branch,
        cycle,
        smu.current_limit,
        smu.sweep.points,
        smu.sweep.voltage,
        smu.sweep.current,
    ]
    start = {
        "plan_name": "iv_sweep",
        DEVICE: smu.name,
        "plan_args": {
            "v_set": v_set,
            "v_reset": v_reset,
            "points": points,
            "current_limit": i_set,
            "reset_current_limit": reset_current_limit,
            "cycles": cycles,
            "delay": delay,
        },
        "num_points": 2 * cycles,
        **extra_metadata(md),
    }

    def sweep(k: int, which: int, voltages: np.ndarray, limit: float) -> Plan:
        yield from checkpoint()
        record({branch: which, cycle: k})
        yield from bps.mv(smu.current_limit, limit)
        yield from bps.abs_set(smu.sweep.points, voltages, wait=True)
        # The sweep's operation id: replayed after a pause, the SMU device publishes the
        # readings of the sweep already done instead of switching the device again.
        yield from trigger_wait(smu.sweep)
        yield from event(objs)
        v = yield from bps.rd(smu.sweep.voltage)
        i = yield from bps.rd(smu.sweep.current)
        return v, i

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        yield from bps.mv(smu.sweep.delay, delay)
        figures: dict[str, list[float]] = {
            k: [] for k in ("set_i_max", "reset_i_max", "set_v_limit", "g_on", "g_off")
        }
        for k in range(cycles):
            v, i = yield from sweep(k, 0, up, i_set)
            hit = first_crossing(i[:points], COMPLIANCE_SHARE * i_set)
            figures["set_i_max"].append(float(np.abs(i).max()))
            figures["set_v_limit"].append(float(up[hit]) if hit >= 0 else math.nan)
            figures["g_on"].append(1e6 * abs(i[-2] / v[-2]))
            v, i = yield from sweep(k, 1, down, i_reset)
            figures["reset_i_max"].append(float(np.abs(i).max()))
            figures["g_off"].append(1e6 * abs(i[-2] / v[-2]))
        summary = {k: np.array(v) for k, v in figures.items()}
        units = {"set_i_max": "A", "reset_i_max": "A", "set_v_limit": "V", "g_on": "uS"}
        yield from summary_stream(summary, {**units, "g_off": "uS"})
        return summary

    def checked() -> Plan:
        yield from check_voltages(smu, {"v_reset": (v_reset, down), "v_set": (v_set, up)})
        limits = {"current_limit": i_set}
        if reset_current_limit is not None:
            limits["reset_current_limit"] = i_reset
        yield from check_current_limit(smu, limits)
        return (yield from bpp.finalize_wrapper(run(), safe_off(smu)))

    return (yield from checked())


def forming_fits(
    target_current: float,
    v_stop: float,
    v_start: float = 0.0,
    current_limit: float = 100e-6,
    **_: Any,
) -> None:
    """ValueError unless the ramp goes up and the target can be reached below the limit."""
    if v_stop <= v_start:
        raise ValueError(f"v_stop = {v_stop} V must be above v_start = {v_start} V")
    if target_current > current_limit:
        raise ValueError(
            f"target_current = {target_current} A is above current_limit = {current_limit} A: "
            "never reached"
        )


@checks_together(forming_fits)
def forming(
    smu: Readable,
    target_current: Annotated[float, Number(positive=True)],
    v_stop: Annotated[float, Number()],
    v_start: Annotated[float, Number()] = 0.0,
    v_step: Annotated[float, Number(positive=True)] = 0.05,
    current_limit: Annotated[float, Number(positive=True)] = 100e-6,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Form a device: step the voltage up until ``|I| >= target_current``, then stop.

    Parameters
    ----------
    smu : SMU
        The source-measure unit.
    target_current : float
        Current (A) that marks the device formed; at most ``current_limit``.
    v_stop : float
        Highest voltage (V) tried.
    v_start : float
        First voltage (V).
    v_step : float
        Voltage step (V), > 0.
    current_limit : float
        Current limit (A) during forming: it bounds the filament the device forms.
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    primary
        One event per step: ``smu_voltage`` (V) and ``smu_current`` (A).
    summary
        ``formed`` (bool), ``forming_voltage`` (V, NaN if not formed), ``current`` (A,
        at the last step), ``steps``.

    Raises
    ------
    ValueError
        Before anything is sent: non-finite values, ``v_stop <= v_start``, a target
        above the current limit (it could never be reached), a voltage beyond the
        setup's ``max_voltage`` or a limit beyond its ``max_current``.
    """
    target = _check_number("target_current", target_current, positive=True)
    limit = _check_number("current_limit", current_limit, positive=True)
    v0 = _check_number("v_start", v_start)
    v1 = _check_number("v_stop", v_stop)
    step = _check_number("v_step", v_step, positive=True)
    forming_fits(target, v1, v0, limit)
    steps = forming_steps(v0, v1, step)
    start = {
        "plan_name": "forming",
        DEVICE: smu.name,
        "plan_args": {
            "target_current": target,
            "v_stop": v1,
            "v_start": v0,
            "v_step": step,
            "current_limit": limit,
        },
        "num_points": len(steps),
        "hints": {"dimensions": [([smu.voltage.name], "primary")]},
        **extra_metadata(md),
    }

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        yield from bps.mv(smu.voltage, float(steps[0]))
        yield from bps.mv(smu.output, True)
        current, formed, n = math.nan, False, 0
        for v in steps:
            # A replayed step sources the same voltage again (never a higher one) and
            # re-reads the current: a device formed by the interrupted step stops here.
            yield from checkpoint()
            yield from bps.mv(smu.voltage, float(v))
            reading = yield from bps.trigger_and_read([smu])
            current, n = reading[smu.current.name]["value"], n + 1
            if abs(current) >= target:
                formed = True
                break
        summary = {
            "formed": formed,
            "forming_voltage": float(v) if formed else math.nan,
            "current": float(current),
            "steps": n,
        }
        yield from summary_stream(summary, {"forming_voltage": "V", "current": "A"})
        return summary

    def checked() -> Plan:
        yield from check_voltages(smu, {"v_stop": (v1, steps)})
        yield from check_current_limit(smu, {"current_limit": limit})
        return (yield from bpp.finalize_wrapper(run(), safe_off(smu)))

    return (yield from checked())

"""Plans of a lab's own package, registered under ``labcim.plans`` by its pyproject.toml.

Most need no board (campaigns give ``chip: none``), so the campaign machinery is tested
on its own: ``slow_count`` takes long enough to be interrupted mid-step.  ``read_cores``
and ``set_adc_bits`` use a real ``ChipTestBoard`` (``sim://`` URLs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.plans import count
from ophyd import Signal

from drivers.board import LinkError


class _Detector(Signal):
    """A reading drawn at every trigger (ophyd.sim's SynSignal would do, but importing
    ophyd.sim leaves an empty temporary directory behind in every process)."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)
        super().__init__(name="det", value=float(self._rng.normal()))

    def trigger(self):
        self.put(float(self._rng.normal()))
        return super().trigger()


def _detector() -> _Detector:
    return _Detector()


def slow_count(
    board: object,
    cores: Sequence[int] = (0,),
    n: int = 5,
    delay: float = 0.05,
    mode: Literal["fast", "careful"] = "fast",
):
    """Read a simulated detector ``n`` times, ``delay`` s apart; the board is ignored."""
    args = {"cores": list(cores), "n": n, "delay": delay, "mode": mode}
    md = {"plan_name": "slow_count", "plan_args": args}
    return (yield from count([_detector()], num=n, delay=delay, md=md))


def slow_end(board: object, tail: float = 1.0):
    """One reading, then ``tail`` s of work after the plan's last checkpoint (as a plan
    computing its summary): a Ctrl-C then comes when bluesky can no longer pause it."""
    md = {"plan_name": "slow_end", "plan_args": {"tail": tail}}

    @bpp.run_decorator(md=md)
    def run():
        yield from bps.checkpoint()
        yield from bps.trigger_and_read([_detector()])
        yield from bps.sleep(tail)

    return (yield from run())


def program(
    board: object,
    weights: npt.NDArray[np.float64],
    tolerance: float = 0.05,
    strategy: Literal["tdp", "iterative"] = "tdp",
):
    """A stand-in for a programming plan: records its weights, reads once."""
    md = {
        "plan_name": "program",
        "plan_args": {"weights": weights, "tolerance": tolerance, "strategy": strategy},
        "board": repr(board),
    }
    return (yield from count([_detector()], md=md))


def failing(board: object, after: int = 1):
    """A run that fails after ``after`` events."""

    @bpp.run_decorator(md={"plan_name": "failing", "plan_args": {"after": after}})
    def inner():
        det = _detector()
        for _ in range(after):
            yield from bps.trigger_and_read([det])
        raise RuntimeError("deliberate failure")

    return (yield from inner())


def board_fault(board: object):
    """A run whose link to the board is lost."""

    @bpp.run_decorator(md={"plan_name": "board_fault", "plan_args": {}})
    def inner():
        yield from bps.null()
        raise LinkError("link lost while receiving: simulated")

    return (yield from inner())


def no_run(board: object):
    """Messages but no run: not usable as a campaign step."""
    yield from bps.null()


def read_cores(board: object, cores: Sequence[int] = (0,)):
    """Read the conductance maps of ``cores`` once."""
    md = {"plan_name": "read_cores", "plan_args": {"cores": list(cores)}}
    return (yield from count([board.core(i) for i in cores], md=md))


def set_adc_bits(board: object, core: int = 0, bits: int = 8):
    """Set a core's ADC resolution in a run; the board refuses values outside its limits."""

    @bpp.run_decorator(md={"plan_name": "set_adc_bits", "plan_args": {"core": core, "bits": bits}})
    def inner():
        yield from bps.mv(board.core(core).adc_bits, bits)

    return (yield from inner())

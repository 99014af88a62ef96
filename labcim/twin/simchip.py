"""The inference engine on a simulated chip object called directly (no bluesky, no link).

A simulator convenience for tests, benchmarks and quick studies: the same engine the
``network_inference`` plan drives through devices, with weights programmed by the real
write-verify path (:mod:`labcim.writeverify`, TDP by default) through the chip's public
``read_conductance`` / ``apply_pulses``, without the link (benchmarks set it against the
plan to measure what the wire and bluesky cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from drivers.protocol import pad_window
from labcim.chip_identity import ChipIdentity
from labcim.network.execution import Deployment, prepare, run_steps
from labcim.writeverify import Strategy, run_write_verify, strategy_for_chip
from mock_hw.board_server import BoardHandler
from mock_hw.chip import Chip

SETTLE = 1.0
"""Wait (s) after programming before calibrating (PCM relaxation: ~50 ms); the plan's
default ``settle`` too."""


class SimChipBackend:
    """:class:`labcim.network.execution.Backend` over a :class:`mock_hw.chip.Chip`.

    ``g_cell_max`` is the write-verify strategy's (what full-scale weights are
    programmed to), not the devices' nominal maximum.
    """

    def __init__(self, chip: Chip, g_cell_max: float) -> None:
        self.chip = chip
        self.rows, self.cols, self.n_cores = chip.spec.rows, chip.spec.cols, chip.spec.n_cores
        self.g_cell_max = g_cell_max
        self.adc_gain_range = identity_of(chip).adc_gain_range
        self.calls = 0

    def mvm(
        self,
        core: int,
        codes: np.ndarray,
        row_start: int = 0,
        col_start: int = 0,
        col_stop: int | None = None,
    ) -> np.ndarray:
        self.calls += 1
        # What the board does with a window: the full MVM, rows outside it at 0 V.
        full = self.chip.mvm(core, pad_window(np.asarray(codes), self.rows, row_start))
        return full[:, col_start:col_stop]

    def adc_lsb(self, core: int) -> float:
        return self.chip.adc_lsb(core)

    def config(self, core: int) -> dict[str, Any]:
        return self.chip.config(core).to_dict()

    def configure(self, core: int, changes: Mapping[str, Any]) -> None:
        self.chip.configure(core, **changes)


def identity_of(chip: Chip) -> ChipIdentity:
    """The identity the simulated board of ``chip`` would report (its IDENTIFY reply)."""
    return ChipIdentity.from_identify(BoardHandler(chip).identity())


def chip_strategy(chip: Chip, name: str = "tdp", **options: Any) -> Strategy:
    """A write-verify strategy for the chip's identity (``options``: `make_strategy`'s)."""
    return strategy_for_chip(name, identity_of(chip), **options)


def program(chip: Chip, strategy: Strategy, targets: Mapping[int, np.ndarray]) -> None:
    """Write-verify every core's targets (uS, (2, r, c) at the core's top-left corner)."""
    for core, g in targets.items():
        r, c = g.shape[1:]
        run_write_verify(
            strategy,
            g,
            lambda core=core, r=r, c=c: chip.read_conductance(core)[:, :r, :c],
            lambda b, core=core: chip.apply_pulses(
                core, b.row, b.col, b.device, b.kind, b.amplitude, b.width
            ),
        )


def deploy(
    chip: Chip, model, X_cal: np.ndarray, *, cores: list[int] | None = None, **kwargs: Any
) -> tuple[Deployment, SimChipBackend, float]:
    """Place, program (TDP write-verify) and calibrate ``model`` on ``chip``.

    Returns the deployment, the backend and the simulated time at which programming
    ended (drift times are counted from it).  ``kwargs`` go to :class:`Deployment`.
    """
    strategy = chip_strategy(chip)
    backend = SimChipBackend(chip, strategy.g_cell_max)
    dep = prepare(model, backend, X_cal, cores=cores, **kwargs)
    program(chip, strategy, dep.targets())
    t_prog = chip.time
    chip.advance(SETTLE)
    run_steps(backend, dep.calibrate(X_cal))
    return dep, backend, t_prog

"""Programming weight matrices with write-verify: ``tdp_program`` and its sub-plans.

The decisions are made by the pure strategies of :mod:`labcim.writeverify`; this module
only maps the weights (:mod:`labcim.mapping`), moves pulse batches and maps between the
strategies and the devices, and records every iteration.

Cores are programmed *interleaved*: each iteration pulses and verifies every core that
still has work, then emits one event holding every core's map.  So an event is one
iteration of the whole program, a pause stops all cores at the same iteration, and the
cores finish together (their drift clocks start within a few iterations of each other,
which matters for an MVM or retention measurement right after).  Each core is read right
after its own pulses, before the next core is pulsed: PCM relaxation (~50 ms) must not
show in verify reads.
"""

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable

from labcim.characterization import cell_conductance, error_stats
from labcim.mapping import (
    SCALINGS,
    Tile,
    check_weights,
    tile_matrix,
    weight_scale,
    weights_to_targets,
)
from labcim.plan_args import EXTRA_METADATA, Integer, NonNegative, OneOf, Positive
from labcim.progress import EventProgress
from labcim.writeverify import STRATEGIES, Strategy, WriteVerifyState, make_strategy
from plans.stubs import (
    Derived,
    Figures,
    Plan,
    board_clock,
    check_cores,
    checkpoint,
    derived,
    event,
    extra_metadata,
    identity,
    measure,
    read_after,
    read_conductance,
    record,
    send_pulse_and_read,
    summary_stream,
    value,
    wait_until,
)

STRATEGY = OneOf(tuple(STRATEGIES))
"""Check of a write-verify strategy name (every plan that programs takes one)."""
SCALING = OneOf(tuple(SCALINGS))
SETTLE = NonNegative("s")


@dataclass
class CoreJob:
    """One core's share of a programming job.

    Attributes
    ----------
    core : CIMCore
        The core device.
    tile : Tile
        The block of the weight matrix it holds (at its top-left corner).
    strategy : Strategy
        Its write-verify strategy (one per core: strategies keep no state, but each core
        gets its own for clarity).
    state : WriteVerifyState
        Started on the tile's targets (checked before anything is sent).
    signals : dict of Derived
        Per-iteration figures recorded in the events.
    """

    core: Any
    tile: Tile
    strategy: Strategy
    state: WriteVerifyState
    signals: dict[str, Derived] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Key prefix of this core's figures, e.g. ``"core3_"``."""
        return f"core{self.tile.core}_"

    def cells(self, g_map: np.ndarray) -> np.ndarray:
        """Summed conductance per polarity (uS, (2, r, c)) of the tile's cells."""
        r, c = self.tile.shape
        return cell_conductance(g_map[:, :r, :c], self.strategy.dpp)

    def readback(self, g_map: np.ndarray) -> np.ndarray:
        """The part of a core map the strategy programs (the tile's cells)."""
        r, c = self.tile.shape
        return g_map[:, :r, :c]

    def figures(self, g_map: np.ndarray) -> dict[Derived, Any]:
        """Cells out of tolerance and error statistics (uS) of a verify read."""
        err = self.cells(g_map) - self.state.goal
        stats = error_stats(err)
        out = int((np.abs(err) > self.strategy.tolerance).sum())
        s = self.signals
        return {
            s["out_of_tolerance"]: out,
            s["error_mean"]: stats["mean"],
            s["error_std"]: stats["std"],
            s["error_max_abs"]: stats["max_abs"],
        }


@dataclass
class Programming:
    """A checked programming job over one or more cores (:func:`prepare_programming`)."""

    jobs: list[CoreJob]
    scale: float
    settle: float
    iteration: Derived = field(default_factory=lambda: derived("iteration", 0, kind="hinted"))

    @property
    def strategy(self) -> Strategy:
        """The strategy every core uses."""
        return self.jobs[0].strategy

    def metadata(self) -> dict[str, Any]:
        """What a replay needs: strategy and its parameters, tiles, per-core targets (uS)."""
        s = self.strategy
        return {
            "strategy": s.name,
            "tolerance": s.tolerance,
            "max_iterations": s.max_iterations,
            "params": dataclasses.asdict(s.params),
            "g_cell_max": s.g_cell_max,
            "scale": self.scale,
            "settle": self.settle,
            "tiles": [dataclasses.asdict(j.tile) for j in self.jobs],
            "targets": {f"core{j.tile.core}": j.state.targets for j in self.jobs},
        }


def prepare_programming(
    board: Any,
    ident: dict[str, Any],
    weights: np.ndarray,
    cores: Sequence[int] | None,
    strategy: str,
    tolerance: float | None,
    max_iterations: int,
    scaling: str,
    settle: float,
) -> Programming:
    """Check every argument of a programming job and build it; nothing is sent.

    Raises
    ------
    ValueError
        Naming the bad field and what is allowed: weights not finite or not 2-D, a
        matrix larger than the given cores, an unknown core, a bad strategy name,
        tolerance <= 0, max_iterations < 1, a bad scaling, settle < 0.
    """
    try:
        w = check_weights(weights)
    except ValueError as exc:
        raise ValueError(f"weights: {exc}") from None
    cores = list(range(ident["n_cores"])) if cores is None else list(cores)
    check_cores(board, cores)
    STRATEGY("strategy", strategy)
    SCALING("scaling", scaling)
    SETTLE("settle", settle)
    try:
        tiles = tile_matrix(w.shape, ident["rows"], ident["cols"], cores)
    except ValueError as exc:
        raise ValueError(f"weights: {exc}") from None
    options = {
        "devices_per_polarity": ident["devices_per_polarity"],
        "device_type": ident["device_type"],
        "limits": ident["limits"],
        "g_max": ident["g_max"],
        "tolerance": tolerance,
        "max_iterations": max_iterations,
    }
    scale = weight_scale(w, scaling)
    jobs = []
    for tile in tiles:
        s = make_strategy(strategy, **options)
        block = w[tile.row0 : tile.row1, tile.col0 : tile.col1]
        state = s.start(weights_to_targets(block, s.g_cell_max, scale))
        core = board.core(tile.core)
        job = CoreJob(core, tile, s, state)
        job.signals = {
            "out_of_tolerance": derived(f"{core.name}_out_of_tolerance", 0, kind="hinted"),
            "error_mean": derived(f"{core.name}_error_mean", 0.0, "uS"),
            "error_std": derived(f"{core.name}_error_std", 0.0, "uS"),
            "error_max_abs": derived(f"{core.name}_error_max_abs", 0.0, "uS"),
            "pulses": derived(f"{core.name}_pulses", 0),
        }
        jobs.append(job)
    return Programming(jobs, scale, float(settle))


def program_cores(job: Programming, stream: str = "primary") -> Plan:
    """Write-verify every core of ``job`` to its targets, one event per iteration.

    Each event of ``stream`` holds ``iteration``, and per core its conductance map
    (``<core>_conductance_map``, uS), the cells out of tolerance, the mean / std / max
    |error| of the cells' summed conductance (uS) and the pulses of the iteration.  A
    core that is done keeps its last map.  Iteration 0 is the read before any pulse.

    Each iteration starts with a checkpoint: a deferred pause stops there; an
    immediate pause or a suspension within an iteration replays that iteration's
    messages, which the operation ids make harmless (a batch is applied once, a verify
    read returns the same map).  The plan's own state (the strategies' states, the maps)
    comes from the first execution and is not touched by a replay.

    Returns
    -------
    dict
        ``{core index: final map}`` of the last verify reads.
    """
    jobs = job.jobs
    figures = [job.iteration]
    for j in jobs:
        figures += j.signals.values()
    objs = [Figures("programming", figures)] + [j.core.conductance for j in jobs]
    maps = {}
    yield from checkpoint()
    for j in jobs:
        maps[j.tile.core] = yield from read_conductance(j.core)
        record(j.figures(maps[j.tile.core]))
    yield from event(objs, stream)
    active = list(jobs)
    while True:
        yield from checkpoint()
        sent = []
        for j in active:
            # Each batch is queued as soon as it is computed: the board applies it (and
            # reads the core) while the next core's batch is computed here.  The board
            # still runs the cores' commands one after the other, in this order.
            batch = j.strategy.step(j.state, j.readback(maps[j.tile.core]))
            record({j.signals["pulses"]: len(batch)})
            if len(batch):
                sent.append((j, (yield from send_pulse_and_read(j.core, batch))))
        active = [j for j, _ in sent]
        if not active:
            return maps
        for j, group in sent:
            maps[j.tile.core] = yield from read_after(j.core, group)
            record(j.figures(maps[j.tile.core]))
        record({job.iteration: max(j.state.iteration for j in jobs)})
        yield from event(objs, stream)


def verify(board: Any, job: Programming, stream: str = "verify") -> Plan:
    """Wait ``job.settle`` s after programming, then read every core once (one event).

    Returns ``{core index: map}`` (uS).
    """
    yield from checkpoint()
    now = yield from board_clock(board)
    yield from wait_until(board, now + job.settle)
    cores = [j.core for j in job.jobs]
    yield from measure([c.conductance for c in cores])
    maps = {}
    for j in job.jobs:
        maps[j.tile.core] = yield from value(j.core.conductance.map)
    yield from event([board.fpga, *(c.conductance for c in cores)], stream)
    return maps


def programming_summary(job: Programming, maps: dict[int, np.ndarray]) -> dict[str, Any]:
    """Per-core outcome figures from the final states and the verify maps.

    ``<coreN>_`` + ``cells``, ``converged``, ``saturated``, ``failed``, ``unfinished``,
    ``dead_devices``, ``worn_devices`` (dead devices that had responded earlier in the
    run: worn out during it) (counts), ``converged_fraction`` (of the tile's cells),
    ``iterations`` (pulse batches), ``failed_cells`` (int (n, 3): polarity, row, col of
    cells that never converged because of a dead device), ``weight_error`` (std of the
    verify read's summed conductance minus target over the cells not failed, uS) and
    ``weight_error_pct`` (the same in % of the full-scale cell conductance
    ``g_cell_max``).
    """
    out: dict[str, Any] = {}
    for j in job.jobs:
        s, p = j.state, j.prefix
        counts = s.summary()
        err = (j.cells(maps[j.tile.core]) - s.goal)[~s.failed]
        std = float(err.std()) if err.size else 0.0
        out.update(
            {
                p + "cells": counts["cells"],
                p + "converged": counts["converged"],
                p + "saturated": counts["saturated"],
                p + "failed": counts["failed"],
                p + "unfinished": counts["unfinished"],
                p + "dead_devices": counts["dead_devices"],
                p + "converged_fraction": counts["converged"] / counts["cells"],
                p + "iterations": counts["iterations"],
                p + "failed_cells": np.argwhere(s.failed).astype(np.int64).reshape(-1, 3),
                p + "weight_error": std,
                p + "weight_error_pct": 100.0 * std / j.strategy.g_cell_max,
                p + "worn_devices": counts["worn_devices"],
            }
        )
    return out


SUMMARY_UNITS = {"weight_error": "uS", "weight_error_pct": "%"}
"""Units of the programming summary figures (by key suffix)."""


CORE_PREFIX = re.compile(r"^(?:[a-z]+_)?core\d+_")
"""``coreN_`` with the optional prefix a calling plan adds (``program_core0_...``)."""


def summary_units(summary: dict[str, Any]) -> dict[str, str]:
    """Units of summary keys, found by their suffix after the ``coreN_`` prefix."""
    return {k: SUMMARY_UNITS.get(CORE_PREFIX.sub("", k), "") for k in summary}


def tdp_program(
    board: Readable,
    weights: np.ndarray,
    cores: list[int] | None = None,
    strategy: Annotated[str, STRATEGY] = "tdp",
    tolerance: Annotated[float | None, Positive()] = None,
    max_iterations: Annotated[int, Integer(1)] = 20,
    scaling: Annotated[str, SCALING] = "max",
    settle: Annotated[float, SETTLE] = 1.0,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Program a weight matrix with write-verify, every iteration recorded.

    The matrix is scaled (``scaling``), split into core-sized tiles over ``cores``
    (:func:`labcim.mapping.tile_matrix`) and mapped to per-polarity conductance targets
    (:func:`labcim.mapping.weights_to_targets`, full scale = the strategy's
    ``g_cell_max``).  The cores are then programmed interleaved (:func:`program_cores`),
    read once more after ``settle`` s (stream ``verify``) and summarized.

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    weights : ndarray, shape (inputs, outputs)
        Weight matrix, finite; ``max |W|`` (or a percentile, ``scaling``) maps to full
        scale.
    cores : list of int, optional
        Cores to use, in order; default all.  The matrix must fit the tiles they give.
    strategy : str
        Write-verify strategy: ``"tdp"`` (HERMES two-device programming), ``"max-fill"``,
        ``"odp"`` (PCM) or ``"ispp"`` (RRAM).
    tolerance : float, optional
        Allowed |summed conductance - target| of a cell (uS), > 0; default the
        strategy's (2.5 % of full scale for PCM, 1 uS for RRAM).
    max_iterations : int
        Largest number of pulse batches (>= 1).
    scaling : str
        ``"max"`` or ``"percentile"`` (99th percentile of |W|, outliers clipped).
    settle : float
        Wait (s) before the final verify read, so post-pulse relaxation (PCM: ~50 ms)
        shows in the recorded weight error; a simulated clock is advanced instead.
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    primary
        One event per iteration (:func:`program_cores`).
    verify
        The maps read ``settle`` s after programming, and the board clock.
    summary
        :func:`programming_summary` figures.

    Raises
    ------
    ValueError
        Before anything is sent, naming the bad argument (:func:`prepare_programming`).
    """
    ident = yield from identity(board)
    job = prepare_programming(
        board, ident, weights, cores, strategy, tolerance, max_iterations, scaling, settle
    )
    start = {
        "plan_name": "tdp_program",
        "plan_args": {
            "weights": np.asarray(weights),
            "cores": None if cores is None else list(cores),
            "strategy": strategy,
            "tolerance": tolerance,
            "max_iterations": max_iterations,
            "scaling": scaling,
            "settle": settle,
        },
        "board_identity": ident,
        "programming": job.metadata(),
        "num_points": max_iterations + 1,
        "hints": {"dimensions": [(["iteration"], "primary")]},
        **extra_metadata(md),
    }

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        yield from program_cores(job)
        maps = yield from verify(board, job)
        summary = programming_summary(job, maps)
        yield from summary_stream(summary, summary_units(summary))
        return summary

    return (yield from run())

"""Shared machinery of the write-verify strategies: pulse batches, state, the step loop.

A strategy is a pure step function.  ``state = strategy.start(targets)`` checks the
targets and sets up the per-cell and per-device arrays; each ``strategy.step(state,
readback)`` takes the conductance map read after the previous pulses and returns the
next :class:`PulseBatch` (empty once every cell is done).  Nothing here talks to
hardware, so a bluesky plan, a benchmark and a unit test drive the same code.

Vocabulary.  A *cell* is one polarity of a unit cell (``dpp`` devices whose conductances
add up); the public per-cell arrays have the targets' shape ``(2, rows, cols)``,
per-device arrays ``(2, dpp, rows, cols)``, and the flat device index sent to the board
is ``polarity * dpp + d``.  Inside, the strategies compute on :class:`Work`: the open
cells only, flattened row by row, per-cell ``(n,)`` and per-device ``(n, dpp)``.

Every device plays one *role*: held fully RESET (``OFF``), held fully SET (``FULL``) or
tuned iteratively (``TUNE``); a device that does not respond to a full pulse is ``dead``
and never pulsed again.

Outcome of a cell (exactly one once it is done):

``converged``
    Its read-back met the strategy's tolerance at a verify read.
``saturated``
    Its devices respond but cannot reach the target (e.g. a TDP cell whose devices'
    SET conductances add up to less than the target): left at best effort.
``failed``
    It did not converge and one of its devices was found dead (a full SET left it below,
    or a full RESET above, ``dead_fraction * g_max``; or, for ISPP, it did not move
    during ``patience`` pulses).  A dead device in a cell that converges anyway does
    not fail the cell.  A dead device that had responded earlier in the same run (it
    moved by more than ``dead_fraction * g_max`` between two reads) wore out during this
    programming: it is counted in ``worn_devices``.
``unfinished``
    Still out of tolerance after ``max_iterations`` pulse batches (or no pulse could
    help it).
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.protocol import PulseKind

LIMIT_KEYS = ("amplitude_unit", "set_max", "reset_max", "form_max", "width_min", "width_max")
"""Keys of the board's ``identify()["limits"]`` a strategy needs."""

DEAD_FRACTION = 0.1
"""A device that a full SET leaves below, or a full RESET above, this share of g_max is
dead (stuck): the strategies' rule, and calibration's count of stuck devices."""


class Role(enum.IntEnum):
    """What a device is asked to do in its cell (stored as int8)."""

    OFF = 0
    FULL = 1
    TUNE = 2


class Last(enum.IntEnum):
    """The pulse a device received in the previous batch (stored as int8)."""

    NONE = 0
    PARTIAL_SET = 1
    FULL_SET = 2
    FULL_RESET = 3
    PARTIAL_RESET = 4


@dataclass(frozen=True)
class PulseBatch:
    """One batch of programming pulses, one per listed device, sorted by row.

    Parameters
    ----------
    row, col : ndarray of int64
        Cell coordinates.
    device : ndarray of int64
        Device within the cell, ``polarity * dpp + index``.
    kind : ndarray of int64
        :class:`PulseKind` wire codes.
    amplitude : ndarray of float64
        Pulse amplitude (uA for PCM, V for RRAM: the limits' ``amplitude_unit``).
    width : ndarray of float64
        Pulse width (s).
    """

    row: np.ndarray
    col: np.ndarray
    device: np.ndarray
    kind: np.ndarray
    amplitude: np.ndarray
    width: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def empty(cls) -> PulseBatch:
        """A batch with no pulse: the strategy has finished."""
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls(i, i, i, i, f, f)

    def rows_between(self, start: int, stop: int) -> PulseBatch:
        """The pulses of rows ``[start, stop)`` (a slice: the batch is sorted by row)."""
        lo, hi = np.searchsorted(self.row, [start, stop])
        return PulseBatch(
            *(getattr(self, k)[lo:hi] for k in ("row", "col", "device", "kind")),
            self.amplitude[lo:hi],
            self.width[lo:hi],
        )


@dataclass
class Work:
    """The cells still being programmed, compacted: what every step computes on.

    Cells are ordered row by row (row, polarity, col), so pulses come out sorted by
    row.  Once half of them are done the arrays are cut down to the open ones, so late
    steps cost in proportion to the cells still open, not to the whole array.

    Attributes
    ----------
    cell : ndarray of int64, (n,)
        Flat index of each cell in the (2, rows, cols) per-cell arrays.
    read : ndarray of int64, (n, dpp)
        Flat index of each device in the (2 * dpp, rows, cols) readback.
    goal : ndarray, (n,)
        Summed conductance each cell is programmed to (uS).
    done : ndarray of bool, (n,)
        Outcome settled.
    devices : dict of ndarray, each (n, dpp)
        Per-device arrays (see :class:`WriteVerifyState`).
    cells : dict of ndarray, each (n,)
        Per-cell arrays of the strategy (e.g. TDP's ``unreachable``).
    iteration : int
        Pulse batches sent so far.
    """

    cell: np.ndarray
    read: np.ndarray
    goal: np.ndarray
    done: np.ndarray
    devices: dict[str, np.ndarray]
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    iteration: int = 0
    pulsed: np.ndarray | None = None
    """The pulse mask being assembled (see :func:`new_pulses`), kept between steps."""

    @property
    def dead(self) -> np.ndarray:
        """Devices found not to respond, bool (n, dpp)."""
        return self.devices["dead"]

    def chunks(self, size: int) -> Iterator[tuple[slice, Work]]:
        """Consecutive blocks of at most ``size`` cells, as views of this work, each with
        its slice of the cells (for the arrays that go with the work: reads, marks).

        The hooks compute on one block at a time so that their temporaries stay small:
        over a whole 64-core chip each would be a fresh 17-67 MB array, and the kernel's
        zeroing of its pages (transparent huge pages, compacted on demand) cost more
        than the arithmetic.  A hook that assigns a new array to a ``cells`` or
        ``devices`` entry instead of writing into it has it copied back here.
        """
        n = len(self.cell)
        for lo in range(0, n, size):
            s = slice(lo, lo + size)
            block = Work(
                self.cell[s],
                self.read[s],
                self.goal[s],
                self.done[s],
                {k: v[s] for k, v in self.devices.items()},
                {k: v[s] for k, v in self.cells.items()},
                self.iteration,
            )
            given = (dict(block.devices), dict(block.cells))
            yield s, block
            for mine, theirs, before in (
                (self.devices, block.devices, given[0]),
                (self.cells, block.cells, given[1]),
            ):
                for k, v in theirs.items():
                    if before.get(k) is v:
                        continue
                    if k not in mine:
                        mine[k] = np.empty((n, *v.shape[1:]), v.dtype)
                    mine[k][s] = v

    def subset(self, at: np.ndarray) -> Work:
        """The cells at the (sorted) indices ``at``.

        Gathered with ``np.take(..., axis=0)``: a boolean mask over the rows of an
        (n, dpp) array is 20x slower on a whole chip.
        """
        return Work(
            *(np.take(a, at, axis=0) for a in (self.cell, self.read, self.goal, self.done)),
            {k: np.take(v, at, axis=0) for k, v in self.devices.items()},
            {k: np.take(v, at, axis=0) for k, v in self.cells.items()},
            self.iteration,
        )


@dataclass
class WriteVerifyState:
    """Everything a strategy remembers between steps.  Built by ``Strategy.start``.

    Attributes
    ----------
    targets : ndarray, (2, rows, cols)
        Per-polarity targets as given (uS).
    goal : ndarray, (2, rows, cols)
        Summed conductance each cell is programmed to (uS); equals ``targets`` except
        for strategies that add a device floor (ISPP adds ``dpp * g_min``).
    iteration : int
        Pulse batches sent so far.
    done, converged, saturated, failed : ndarray of bool, (2, rows, cols)
        Per-cell outcome (see the module docstring).
    done_at : ndarray of int16, (2, rows, cols)
        Pulse batches the cell had received when it was done (-1 while not done).
    devices : dict of ndarray, each (2, dpp, rows, cols)
        Per-device arrays, complete once ``finished`` (while running, open cells' values
        live in ``work``): ``role``, ``goal`` (uS), ``tol`` (uS), ``level`` (estimated
        SET conductance, uS), ``last``, ``amp``, ``width``, ``g_prev`` (last read, uS),
        ``dead``, ``responded`` (moved by more than ``dead_fraction * g_max`` between two
        reads of this run), plus the strategy's own.
    work : Work
        The open cells, compacted.
    finished : bool
        No more pulses will be sent.
    """

    targets: np.ndarray
    goal: np.ndarray
    devices: dict[str, np.ndarray]
    work: Work
    iteration: int = 0
    finished: bool = False
    done: np.ndarray = field(init=False)
    converged: np.ndarray = field(init=False)
    saturated: np.ndarray = field(init=False)
    failed: np.ndarray = field(init=False)
    done_at: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        shape = self.goal.shape
        for name in ("done", "converged", "saturated", "failed"):
            setattr(self, name, np.zeros(shape, bool))
        self.done_at = np.full(shape, -1, np.int16)

    @property
    def unfinished(self) -> np.ndarray:
        """Cells done without converging, saturating or failing (out of iterations)."""
        return self.done & ~(self.converged | self.saturated | self.failed)

    @property
    def dead(self) -> np.ndarray:
        """Devices found not to respond, bool (2, dpp, rows, cols)."""
        return self.devices["dead"]

    @property
    def worn(self) -> np.ndarray:
        """Dead devices that had responded earlier in this run: they wore out during the
        programming (not stuck from before), bool (2, dpp, rows, cols)."""
        return self.devices["dead"] & self.devices["responded"]

    def store(self, rows: np.ndarray | None = None) -> None:
        """Copy the device arrays of the cells in ``work`` into ``devices``: of every
        cell, or of the rows ``rows`` of the work only (the cells about to leave it)."""
        w = self.work
        read = w.read if rows is None else np.take(w.read, rows, axis=0)
        for k, v in w.devices.items():
            self.devices[k].ravel()[read] = v if rows is None else np.take(v, rows, axis=0)

    def summary(self) -> dict[str, Any]:
        """Counts of every outcome, the iterations used and the largest ``done_at``."""
        return {
            "cells": int(self.goal.size),
            "converged": int(self.converged.sum()),
            "saturated": int(self.saturated.sum()),
            "failed": int(self.failed.sum()),
            "unfinished": int(self.unfinished.sum()),
            "dead_devices": int(self.dead.sum()),
            "worn_devices": int(self.worn.sum()),
            "iterations": self.iteration,
            "max_done_at": int(self.done_at.max()),
        }


def check_limits(limits: Mapping[str, Any], unit: str) -> dict[str, Any]:
    """Return the limits a strategy needs, or raise ValueError naming what is wrong.

    Parameters
    ----------
    limits : mapping
        The board's ``identify()["limits"]`` (extra keys are ignored).
    unit : str
        Amplitude unit the strategy works in (``"uA"`` or ``"V"``).
    """
    missing = [k for k in LIMIT_KEYS if k not in limits]
    if missing:
        raise ValueError(f"limits lack {missing}; needed: {list(LIMIT_KEYS)}")
    if limits["amplitude_unit"] != unit:
        raise ValueError(
            f"limits amplitude_unit = {limits['amplitude_unit']!r}; this strategy needs {unit!r}"
        )
    out = {k: limits[k] for k in LIMIT_KEYS}
    for k in LIMIT_KEYS[1:]:
        check_positive(k, out[k])
    if out["width_min"] > out["width_max"]:
        raise ValueError(f"width_min = {out['width_min']} > width_max = {out['width_max']}")
    return out


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} = {value!r} must be a number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} = {value!r} must be finite and > 0")
    return float(value)


class Strategy(ABC):
    """Base of every write-verify strategy: validation, the step loop, the outcomes.

    Subclasses decide the roles (:meth:`_plan`), the first batch (:meth:`_first_pulses`),
    what a verify read teaches about each device (:meth:`_observe`), when a cell counts
    as converged (:meth:`_converged`) and the tuning pulses (:meth:`_tune`).  Apart from
    :meth:`_first_pulses`, the hooks are given the work in blocks of
    :attr:`block_cells` cells (:meth:`Work.chunks`): they compute per cell.

    A subclass that a package registers in the ``labcim.strategies`` entry-point group
    (``name = "module:Class"``, the entry's name equal to the class's ``name``) becomes
    usable by name in every plan that programs (`labcim.writeverify.make_strategy`);
    its constructor takes ``params`` (a ``params_class``) and the keywords below.

    Parameters
    ----------
    devices_per_polarity : int
        Devices per polarity of a unit cell (1 or 2).
    g_max : float
        Nominal maximum conductance of one device (uS).
    tolerance : float or None
        Allowed |read-back - goal| of a cell (uS); None: :attr:`default_tolerance`.
    max_iterations : int
        Largest number of pulse batches.
    limits : dict
        Checked pulse limits (:func:`check_limits`).
    """

    name: str
    """The name it is registered under (``labcim.strategies`` entry points)."""
    unit: str
    """Amplitude unit the strategy's parameters are in."""
    params_class: type
    """Dataclass of its pulse parameters (the ``**params`` of ``make_strategy``)."""
    device_types: tuple[str, ...]
    """Device types (``"pcm"``, ``"rram"``) it programs."""
    dead_fraction: float = DEAD_FRACTION
    """A full SET leaves a working device above, a full RESET below, this share of g_max."""
    block_cells: int = 1 << 17
    """Cells the hooks compute on at a time (:meth:`Work.chunks`): one 256 x 256 core,
    whose float32 device arrays (1 MB) stay below the sizes that get fresh pages."""

    def __init__(
        self,
        devices_per_polarity: int,
        g_max: float,
        tolerance: float | None,
        max_iterations: int,
        limits: dict[str, Any],
    ) -> None:
        self.dpp = devices_per_polarity
        self.g_max = g_max
        self.tolerance = self.default_tolerance if tolerance is None else tolerance
        self.max_iterations = max_iterations
        self.limits = limits

    # -- public step interface ---------------------------------------------------------

    def start(self, targets: np.ndarray) -> WriteVerifyState:
        """Check ``targets`` (uS, shape (2, rows, cols)) and return a fresh state.

        Raises
        ------
        ValueError
            If the targets are not a finite, non-negative (2, rows, cols) array within
            what the strategy can represent; nothing has been pulsed yet.
        """
        t = np.asarray(targets)
        if t.ndim != 3 or t.shape[0] != 2 or 0 in t.shape:
            raise ValueError(f"targets must have shape (2, rows, cols), got {t.shape}")
        if not (np.issubdtype(t.dtype, np.floating) or np.issubdtype(t.dtype, np.integer)):
            raise ValueError(f"targets must be numbers, got dtype {t.dtype}")
        t = t.astype(np.float64)
        for bad, what in ((~np.isfinite(t), "is not finite"), (t < 0, "is negative")):
            if bad.any():
                i = tuple(int(v) for v in np.argwhere(bad)[0])
                raise ValueError(f"targets[{i}] = {t[i]} {what}")
        top = self.max_target
        if t.max() > top * (1 + 1e-9):
            i = tuple(int(v) for v in np.unravel_index(np.argmax(t), t.shape))
            raise ValueError(f"targets[{i}] = {t[i]:g} uS exceeds this strategy's {top:g} uS")
        goal = self._goal(t)
        _, rows, cols = t.shape
        # Cells row by row (row, polarity, col); devices of a cell side by side.  Built by
        # broadcasting the axes' ranges: a meshgrid would make three full-size copies.
        r = np.arange(rows).reshape(-1, 1, 1, 1)
        p = np.arange(2).reshape(1, -1, 1, 1)
        c = np.arange(cols).reshape(1, 1, -1, 1)
        cell = ((p * rows + r) * cols + c).ravel()
        read = (((p * self.dpp + np.arange(self.dpp)) * rows + r) * cols + c).reshape(-1, self.dpp)
        n = cell.size
        shape = (n, self.dpp)
        devices = {
            "role": np.zeros(shape, np.int8),
            "goal": np.zeros(shape, np.float32),
            "tol": np.full(shape, self.tolerance, np.float32),
            "level": np.full(shape, self.g_max, np.float32),
            "last": np.zeros(shape, np.int8),
            "amp": np.zeros(shape, np.float32),
            "width": np.zeros(shape, np.float32),
            "g_prev": np.zeros(shape, np.float32),
            "dead": np.zeros(shape, bool),
            "responded": np.zeros(shape, bool),
            **self._extra_device_arrays(shape),
        }
        work = Work(cell, read, goal.ravel()[cell], np.zeros(n, bool), devices)
        public = {k: np.empty((2, self.dpp, rows, cols), v.dtype) for k, v in devices.items()}
        return WriteVerifyState(targets=t, goal=goal, devices=public, work=work)

    def step(self, state: WriteVerifyState, readback: np.ndarray) -> PulseBatch:
        """Decide the next pulses from the conductances read after the previous ones.

        Parameters
        ----------
        state : WriteVerifyState
            From :meth:`start`; updated in place.
        readback : ndarray, (2 * dpp, rows, cols)
            Conductance of every device (uS), device-major as the board reads it.

        Returns
        -------
        PulseBatch
            The next pulses; empty when every cell is done (then ``state.finished``).
        """
        self._check_readback(state, readback)
        if state.finished:
            return PulseBatch.empty()
        w = state.work
        w.iteration = state.iteration
        # a fresh array: it becomes the work's g_prev (_emit)
        g = np.take(np.asarray(readback).ravel(), w.read).astype(np.float32, copy=False)
        if state.iteration == 0:
            first = self._first_pulses(w, g)
            if first is not None:
                return self._emit(state, g, first)
        size = self.block_cells
        for s, b in w.chunks(size):
            gb = g[s]
            if state.iteration > 0:
                moved = np.abs(gb - b.devices["g_prev"])
                b.devices["responded"] |= moved > self.dead_fraction * self.g_max
                self._observe(b, gb)
            self._plan(b, gb)
            self._judge(state, b, gb)
        if state.iteration >= self.max_iterations or state.done.all():
            return self._finish(state)
        if w.done.mean() > 0.5:
            keep = np.flatnonzero(~w.done)
            # The cells kept are stored when they leave in turn (or at the finish).
            state.store(np.flatnonzero(w.done))
            state.work = w = w.subset(keep)
            g = np.take(g, keep, axis=0)
        pulses = new_pulses(w)
        for s, b in w.chunks(size):
            pb = tuple(a[s] for a in pulses)
            self._enforce_roles(b, g[s], pb)
            self._tune(b, g[s], pb)
        if not pulses[0].any():
            return self._finish(state)
        return self._emit(state, g, pulses)

    # -- hooks ------------------------------------------------------------------------

    @property
    @abstractmethod
    def max_target(self) -> float:
        """Largest target of one cell this strategy accepts (uS)."""

    @property
    @abstractmethod
    def default_tolerance(self) -> float:
        """Tolerance (uS) used when none is given."""

    @property
    @abstractmethod
    def g_cell_max(self) -> float:
        """Summed conductance of one polarity that full-scale weights should map to (uS);
        pass it to :func:`labcim.mapping.weights_to_targets`."""

    def _goal(self, targets: np.ndarray) -> np.ndarray:
        """Summed conductance (uS) each cell is programmed to."""
        return targets

    def _extra_device_arrays(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Per-device arrays a subclass adds to the state."""
        return {}

    def _first_pulses(self, w: Work, g: np.ndarray) -> Pulses | None:
        """Pulses of the first batch sent before any planning, or None to plan at once."""
        return None

    @abstractmethod
    def _plan(self, w: Work, g: np.ndarray) -> None:
        """Set roles, per-device goals and tolerances of the cells not yet done."""

    @abstractmethod
    def _observe(self, w: Work, g: np.ndarray) -> None:
        """Learn from the response of each device to the previous batch."""

    @abstractmethod
    def _converged(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        """Cells within tolerance; ``fulfils``: per device, it plays its role at this read."""

    def _saturated(self, w: Work, g: np.ndarray, fulfils: np.ndarray) -> np.ndarray:
        """Cells that cannot get closer (devices respond but cannot reach the goal)."""
        return np.zeros(w.goal.shape, bool)

    def _hopeless(self, w: Work, g: np.ndarray) -> np.ndarray:
        """Cells with a dead device that cannot converge any more."""
        return device_any(w.dead)

    @abstractmethod
    def _tune(self, w: Work, g: np.ndarray, pulses: Pulses) -> None:
        """Add the pulses of ``TUNE`` devices of undone cells to ``pulses`` (in place)."""

    # -- machinery --------------------------------------------------------------------

    def _check_readback(self, state: WriteVerifyState, readback: np.ndarray) -> None:
        rows, cols = state.goal.shape[1:]
        g = np.asarray(readback)
        want = (2 * self.dpp, rows, cols)
        if g.shape != want:
            raise ValueError(f"readback must have shape {want} (2*dpp, rows, cols), got {g.shape}")
        if not np.issubdtype(g.dtype, np.floating) and not np.issubdtype(g.dtype, np.integer):
            raise ValueError(f"readback must be numbers, got dtype {g.dtype}")
        # A NaN or inf makes the sum non-finite (an overflow too, which the exact check
        # then clears): one pass and no chip-sized temporary for a valid map.
        with np.errstate(over="ignore"):
            total = g.sum(dtype=np.float64)
        if not np.isfinite(total) and not np.isfinite(g).all():
            raise ValueError("readback contains NaN or inf")

    def _add_full(self, pulses: Pulses, mask: np.ndarray, kind: PulseKind) -> None:
        """Mark ``mask`` devices (bool, or flat indices: :func:`set_pulses`) for a full SET
        (set_max, width_max) or full RESET."""
        full_set = kind == PulseKind.SET
        amp, width = (
            (self.limits["set_max"], self.limits["width_max"])
            if full_set
            else (self.limits["reset_max"], self.reset_width)
        )
        set_pulses(pulses, mask, Last.FULL_SET if full_set else Last.FULL_RESET, amp, width)

    @property
    def reset_width(self) -> float:
        """Width (s) of a full RESET pulse."""
        return self.limits["width_min"]

    def _observe_full(self, w: Work, g: np.ndarray) -> None:
        """A full SET that leaves a device low, or a full RESET that leaves it high, kills it.

        A full SET also measures the device's SET conductance (``level``).
        """
        dev = w.devices
        dead_g = self.dead_fraction * self.g_max
        full_set = dev["last"] == Last.FULL_SET
        dev["dead"] |= (full_set & (g < dead_g)) | ((dev["last"] == Last.FULL_RESET) & (g > dead_g))
        np.copyto(dev["level"], g, where=full_set & ~dev["dead"])

    def _judge(self, state: WriteVerifyState, w: Work, g: np.ndarray) -> None:
        """Settle the outcome of the cells of ``w`` (the work or a block of it) that are
        converged, saturated or hopeless."""
        dev = w.devices
        role = dev["role"]
        dead_g = self.dead_fraction * self.g_max
        fulfils = np.where(
            role == Role.OFF,
            g <= dead_g,
            np.where(
                role == Role.FULL, g >= 0.5 * dev["level"], np.abs(dev["goal"] - g) <= dev["tol"]
            ),
        )
        open_ = ~w.done
        conv = open_ & self._converged(w, g, fulfils)
        fail = open_ & ~conv & self._hopeless(w, g)
        sat = open_ & ~conv & ~fail & self._saturated(w, g, fulfils)
        for outcome, mask in (
            (state.converged, conv),
            (state.failed, fail),
            (state.saturated, sat),
        ):
            outcome.ravel()[w.cell[mask]] = True
        newly = conv | fail | sat
        w.done |= newly
        state.done.ravel()[w.cell[newly]] = True
        state.done_at.ravel()[w.cell[newly]] = state.iteration

    def _enforce_roles(self, w: Work, g: np.ndarray, pulses: Pulses) -> None:
        """Full RESET of OFF devices still high, full SET of FULL devices still low."""
        dev = w.devices
        live = ~dev["dead"] & ~w.done[:, None]
        role = dev["role"]
        self._add_full(
            pulses,
            live & (role == Role.OFF) & (g > self.dead_fraction * self.g_max),
            PulseKind.RESET,
        )
        self._add_full(pulses, live & (role == Role.FULL) & (g < 0.5 * dev["level"]), PulseKind.SET)

    def _emit(self, state: WriteVerifyState, g: np.ndarray, pulses: Pulses) -> PulseBatch:
        """Record what each device receives and turn the marks into a row-sorted batch."""
        mask, last, amp, width = pulses
        w = state.work
        dev = w.devices
        # The marks are the work's own arrays (new_pulses); g is this step's own copy.
        for k, v in (("last", last), ("amp", amp), ("width", width)):
            if v is not dev[k]:
                np.copyto(dev[k], v)
        dev["g_prev"] = g
        state.iteration += 1
        # One flat index into the (n, dpp) arrays, in order: cells are ordered row by
        # row (a 2-D np.nonzero and gathers through its two arrays cost 3-7x more).
        at = np.flatnonzero(mask)
        _, rows, cols = state.goal.shape
        # Quotients by floor_divide and the remainders by subtraction, in place:
        # np.divmod of int64 is ~5x slower than floor_divide, which divides by a
        # precomputed multiplier.  The products go into the output arrays not yet
        # filled (row, then kind): no batch-sized int64 temporary.
        col = np.take(w.read, at)
        plane = col // (rows * cols)
        row = np.multiply(plane, rows * cols)
        np.subtract(col, row, out=col)
        np.floor_divide(col, cols, out=row)
        kind = np.multiply(row, cols)
        np.subtract(col, kind, out=col)
        np.take(_KIND_OF_LAST, np.take(last, at), out=kind)
        return PulseBatch(
            row=row,
            col=col,
            device=plane,
            kind=kind,
            amplitude=np.take(amp, at).astype(np.float64),
            width=np.take(width, at).astype(np.float64),
        )

    def _finish(self, state: WriteVerifyState) -> PulseBatch:
        w = state.work
        # Out of iterations with a dead device: the cell failed (it is not unfinished).
        dead = ~w.done & device_any(w.dead)
        state.failed.ravel()[w.cell[dead]] = True
        state.store()
        state.done_at[~state.done] = state.iteration
        state.done[:] = True
        state.work.done[:] = True
        state.finished = True
        return PulseBatch.empty()


_KIND_OF_LAST = np.array(
    [PulseKind.SET, PulseKind.SET, PulseKind.SET, PulseKind.RESET, PulseKind.RESET], np.int64
)
"""Wire code of the pulse behind each :class:`Last` value (NONE never reaches the wire)."""

Pulses = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per-device pulse marks being assembled: (mask, last, amplitude, width), device-shaped."""


def new_pulses(w: Work) -> Pulses:
    """No device of ``w`` marked yet.

    The marks are written straight into the work's ``last``, ``amp`` and ``width``
    (cleared here: :meth:`Strategy._observe` has read the previous batch's values by
    now) and into a mask kept with the work, so that a step over a whole chip neither
    allocates four fresh device-shaped arrays nor copies them into the state afterwards.
    """
    dev = w.devices
    if w.pulsed is None or w.pulsed.shape != dev["last"].shape:
        w.pulsed = np.zeros(dev["last"].shape, bool)
    else:
        w.pulsed.fill(False)
    for k in ("last", "amp", "width"):
        dev[k].fill(0)
    return w.pulsed, dev["last"], dev["amp"], dev["width"]


def set_pulses(
    pulses: Pulses, mask: np.ndarray, last: Last, amp: float | np.ndarray, width: float | np.ndarray
) -> None:
    """Mark the devices of ``mask`` for a pulse of type ``last``, ``amp``, ``width`` (s).

    ``mask`` is a bool array of the pulses' shape, or the sorted flat indices of the
    devices (then array ``amp`` and ``width`` hold one value per index).
    """
    m, kinds, amps, widths = pulses
    if mask.dtype != bool:
        for a, v in ((m, True), (kinds, last), (amps, amp), (widths, width)):
            np.put(a, mask, v)
        return
    m |= mask
    np.copyto(kinds, last, where=mask)  # a boolean-mask assignment is several times slower
    np.copyto(amps, amp, where=mask, casting="unsafe")
    np.copyto(widths, width, where=mask, casting="unsafe")


def device_sum(a: np.ndarray) -> np.ndarray:
    """Sum of an (n, dpp) array over each cell's devices, (n,).

    Column by column: the same additions in the same order as ``a.sum(axis=1)`` (numpy
    adds so few terms one after the other), without numpy's loop over a length-2 axis,
    which is 20-40x slower on a whole chip's cells.
    """
    return _across(np.add, a)


def device_any(a: np.ndarray) -> np.ndarray:
    """``a.any(axis=1)`` of a bool (n, dpp) array, column by column (see :func:`device_sum`)."""
    return _across(np.logical_or, a)


def device_all(a: np.ndarray) -> np.ndarray:
    """``a.all(axis=1)`` of a bool (n, dpp) array, column by column (see :func:`device_sum`)."""
    return _across(np.logical_and, a)


def _across(ufunc: np.ufunc, a: np.ndarray) -> np.ndarray:
    out = a[:, 0].copy()
    for d in range(1, a.shape[1]):
        ufunc(out, a[:, d], out=out)
    return out

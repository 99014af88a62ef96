"""A simulated ArC TWO at pyarc2's API: the subset of ``pyarc2.Instrument`` labcim uses.

The only simulator in labcim that stands at a vendor library's API instead of a wire
protocol: ``labcim.arc2``'s board backend calls it exactly as it calls a
``pyarc2.Instrument`` (same method names, positional arguments, types and units:
channels as integers 0..63, voltages in V, pulse widths in integer ns, currents in A,
``float32`` numpy arrays), so the backend code that runs here is the code a real
ArC TWO runs.  Written from pyarc2 0.6's documentation and signatures (its ``.pyi``
stubs and docstrings); nothing of pyarc2 is imported.

Behind it is one crossbar of mock_hw's HfOx RRAM population (`mock_hw.rram`): rows on
channels 0..15 and 32..47, columns on 16..31 and 48..63 (pyarc2's standard 32 x 32
mapping: a row's channel is the low channel of ``read_slice_masked`` and
``pulse_slice_masked``).  The device sees high minus low: a positive pulse SETs a
formed device (and forms an unformed one above its forming voltage), a negative pulse
RESETs it.  Time is the wall clock since the instrument was opened, as on the bench:
relaxation runs while a plan waits.

What is simulated of the instrument itself: the command buffer (pulses and channel
voltages are queued until ``execute()``), the output range (|V| <= 10 V, refused with
``ArC2Error`` naming the channel and the limit, like every out-of-range argument), and
``calls``, a count of every API call by name, which tests read to check that nothing
reached the instrument.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Self

import numpy as np

from drivers.protocol import PulseKind
from mock_hw.rram import RRAMDevice

CHANNELS = 64
ROW_CHANNELS = (*range(0, 16), *range(32, 48))
"""Channels of the standard mapping's rows, in row order (pyarc2: the low channel of a
row read or pulse)."""
COL_CHANNELS = (*range(16, 32), *range(48, 64))
"""Channels of the standard mapping's columns, in column order."""
VOLTAGE_RANGE = 10.0
"""Largest |voltage| of a channel in the standard output range (V)."""


class ArC2Error(Exception):
    """What the simulated instrument raises for an argument it refuses (pyarc2's name)."""


class SimulatedArC2:
    """A simulated ``pyarc2.Instrument`` with a 32 x 32 RRAM crossbar wired to it.

    Parameters
    ----------
    port : int
        The instrument id (what ``find_ids()`` would list).
    firmware : str
        Firmware path; recorded, nothing is loaded.
    init : bool
        Bring the channels to 0 V (as pyarc2 does after loading the firmware).
    seed : int
        Seed of the device population and of every random draw (keyword only: not part
        of pyarc2's signature).
    """

    def __init__(self, port: int, firmware: str, init: bool = True, *, seed: int = 0) -> None:
        self.port, self.firmware = port, firmware
        self.calls: Counter[str] = Counter()
        self._model = RRAMDevice()
        self._rng = np.random.default_rng(seed)
        self._state = self._model.new_state((32, 32), self._rng)
        self._t0 = time.monotonic()
        self._buffer: list[tuple[str, Any]] = []
        self._volts = np.zeros(CHANNELS)
        self.calls["__init__"] += 1

    # -- the pyarc2 API ----------------------------------------------------------------

    def pulse_slice_masked(
        self, chan: int, voltage: float, nanos: int, mask: Iterable[int]
    ) -> Self:
        """Queue a pulse of ``voltage`` (V) for ``nanos`` ns from low channel ``chan`` to
        each high channel of ``mask``."""
        self.calls["pulse_slice_masked"] += 1
        row = self._row(chan)
        cols = self._cols(mask)
        self._check_voltage(chan, voltage)
        if isinstance(nanos, bool) or not isinstance(nanos, int | np.integer) or nanos <= 0:
            raise ArC2Error(f"nanos = {nanos!r} must be a positive integer (ns)")
        self._buffer.append(("pulse", (row, cols, float(voltage), int(nanos))))
        return self

    def config_channels(self, config: Iterable[tuple[int, float]], base: float | None) -> Self:
        """Queue channel voltages ``[(channel, V), ...]``; the others to ``base`` (V), or
        unchanged if None."""
        self.calls["config_channels"] += 1
        pairs = [(int(c), float(v)) for c, v in config]
        for c, v in pairs:
            self._check_channel(c)
            self._check_voltage(c, v)
        if base is not None:
            self._check_voltage(-1, base)
        self._buffer.append(("config", (pairs, base)))
        return self

    def ground_all(self) -> Self:
        """Queue every channel to 0 V."""
        self.calls["ground_all"] += 1
        self._buffer.append(("config", ([], 0.0)))
        return self

    def execute(self) -> Self:
        """Run the command buffer."""
        self.calls["execute"] += 1
        buffer, self._buffer = self._buffer, []
        for what, args in buffer:
            if what == "pulse":
                self._pulse(*args)
            else:
                pairs, base = args
                if base is not None:
                    self._volts[:] = base
                for c, v in pairs:
                    self._volts[c] = v
        return self

    def wait(self) -> None:
        """Block until the command buffer has run (it already has)."""
        self.calls["wait"] += 1

    def read_slice_masked(self, chan: int, mask: Iterable[int], vread: float) -> np.ndarray:
        """Currents (A, float32, 32 in column order, NaN outside ``mask``) of the devices
        between low channel ``chan`` (at -``vread``) and the columns of ``mask``."""
        self.calls["read_slice_masked"] += 1
        row = self._row(chan)
        cols = self._cols(mask)
        self._check_voltage(chan, vread)
        g = self._conductance()[row]  # uS
        out = np.full(32, np.nan, np.float32)
        out[cols] = g[cols] * 1e-6 * vread
        return out

    def read_slice_open(self, highs: Iterable[int], ground_after: bool) -> np.ndarray:
        """Currents (A, float32, one per channel 0..63, NaN outside ``highs``) flowing
        into the column channels ``highs`` (held at 0 V) from the row voltages set."""
        self.calls["read_slice_open"] += 1
        cols = self._cols(highs)
        v_rows = self._volts[list(ROW_CHANNELS)]
        currents = v_rows @ self._conductance() * 1e-6  # uS * V -> A
        out = np.full(CHANNELS, np.nan, np.float32)
        out[np.asarray(COL_CHANNELS)[cols]] = currents[cols]
        if ground_after:
            self._volts[:] = 0.0
        return out

    # -- the crossbar ------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _conductance(self) -> np.ndarray:
        return self._model.conductance(self._state, self._now(), self._rng, read_noise=True)

    def _pulse(self, row: int, cols: np.ndarray, voltage: float, nanos: int) -> None:
        if voltage == 0 or cols.size == 0:
            return
        # Positive: SET, or FORM of an unformed device (a FORM pulse on a formed device
        # acts as a SET of that amplitude in the model); negative: RESET.
        kind = PulseKind.FORM if voltage > 0 else PulseKind.RESET
        n = cols.size
        index = (np.full(n, row), cols)
        self._model.apply_pulses(
            self._state,
            index,
            np.full(n, kind),
            np.full(n, abs(voltage)),
            np.full(n, nanos * 1e-9),
            self._now(),
            self._rng,
        )

    def _row(self, chan: int) -> int:
        self._check_channel(chan)
        if chan not in ROW_CHANNELS:
            raise ArC2Error(f"channel {chan} is not a row of the standard mapping")
        return ROW_CHANNELS.index(chan)

    def _cols(self, mask: Iterable[int]) -> np.ndarray:
        chans = [int(c) for c in mask]
        for c in chans:
            self._check_channel(c)
            if c not in COL_CHANNELS:
                raise ArC2Error(f"channel {c} is not a column of the standard mapping")
        return np.array([COL_CHANNELS.index(c) for c in chans], dtype=np.intp)

    @staticmethod
    def _check_channel(chan: int) -> None:
        if isinstance(chan, bool) or not isinstance(chan, int | np.integer):
            raise ArC2Error(f"channel {chan!r} must be an integer")
        if not 0 <= chan < CHANNELS:
            raise ArC2Error(f"channel {chan} is outside [0, {CHANNELS})")

    @staticmethod
    def _check_voltage(chan: int, voltage: float) -> None:
        if not (np.isfinite(voltage) and abs(voltage) <= VOLTAGE_RANGE):
            where = "base" if chan < 0 else f"channel {chan}"
            raise ArC2Error(
                f"{where}: {voltage!r} V is outside the output range +-{VOLTAGE_RANGE:g} V"
            )

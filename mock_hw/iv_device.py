"""Quasi-static I-V of one memory device under the probes of a source-measure unit.

The probed device is one member of the population the board simulator draws: the same
device model (:class:`mock_hw.rram.RRAMDevice`, :class:`mock_hw.pcm.PCMDevice`), the
same parameters (``RRAMParams`` / ``PCMParams``, so one model file calibrates both), the
same fabrication draws, pulse response, relaxation and read noise.  Forming a device
through the SMU and through the board therefore simulates one technology.

What a DC I-V needs beyond the pulse model is here, in :class:`RRAMIVParams` and
:class:`PCMIVParams`:

- a conduction law: the pulse model knows only the small-signal conductance ``g``;
  unformed RRAM and amorphous PCM conduct sinh-shaped, ``I = g v_nl sinh(V / v_nl)``;
- the compliance: when the device would draw more than the current limit, the SMU
  regulates the current to exactly the limit and the voltage across the device drops to
  the value at which it carries it (the SMU's source readback);
- how a DC point programs the device: it acts on the pulse model as ``substeps`` pulses
  of ``dwell / substeps`` each, at the voltage (RRAM) or current (PCM) the device sees,
  recomputed after every pulse that changed it, so a SET under compliance stops growing
  once the limited voltage falls below the threshold;
- PCM threshold switching: an amorphous cell snaps on at ``v_th`` and then carries
  whatever the compliance allows, at its holding voltage.

Units: V, A, S (siemens), s at this module's interface; the pulse model works in uS and
(PCM amplitudes) uA.  Every random draw comes from the seeded generator given to the
constructor, so a seed reproduces a run.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod

import numpy as np

from mock_hw.device_base import DeviceParams
from mock_hw.devices import DeviceModel, PulseKind
from mock_hw.pcm import PCMDevice, PCMParams
from mock_hw.rram import RRAMDevice, RRAMParams

_ONE = (np.zeros(1, np.intp),)
"""Index of the single device in a (1,)-shaped population."""


def sinh_current(g: float, v: float, v_nl: float | None) -> float:
    """Current (A) of conductance g (S) at v (V): ohmic if v_nl is None, else sinh-shaped."""
    if v_nl is None:
        return g * v
    return g * v_nl * math.sinh(v / v_nl)


def sinh_voltage(g: float, i: float, v_nl: float | None) -> float:
    """Inverse of :func:`sinh_current`: voltage (V) at which the device carries i (A)."""
    if v_nl is None:
        return i / g
    return v_nl * math.asinh(i / (g * v_nl))


@dataclasses.dataclass(frozen=True)
class IVParams(DeviceParams):
    """What a DC I-V of any device needs beyond its pulse model.

    Parameters
    ----------
    dwell : float
        Time one sourced point acts on the device (s): a DC point of a sweep at 1 PLC,
        about 20 ms; the pulse model sees it as a pulse this long.
    substeps : int
        Pulses a point is cut into, so that the compliance acts while the device switches.
    noise_floor : float
        Standard deviation of the SMU's own current noise (A), added to the device's read
        noise.
    """

    dwell: float = 0.02
    substeps: int = 8
    noise_floor: float = 1e-12


@dataclasses.dataclass(frozen=True)
class RRAMIVParams(IVParams):
    """DC conduction of a probed HfOx RRAM device.

    Parameters
    ----------
    v_nl_unformed : float
        Voltage scale (V) of the sinh leakage of unformed devices: with the board model's
        0.01-0.1 uS it gives 0.01-0.1 uA at 1 V and 0.1-1.4 uA at 3.3 V, below the 10 uA
        a forming run looks for.
    g_ohmic : float
        Conductance (S) from which conduction is ohmic (a filament): formed devices sit
        at or above the board model's g_min of 1 uS, unformed ones below 0.1 uS.
    """

    v_nl_unformed: float = 1.0
    g_ohmic: float = 0.5e-6


@dataclasses.dataclass(frozen=True)
class PCMIVParams(IVParams):
    """DC conduction and threshold switching of a probed mushroom PCM cell.

    Parameters
    ----------
    v_th_mean, v_th_std : float
        Threshold-switching voltage of an amorphous cell (V), redrawn after each RESET.
    v_hold : float
        Voltage across a threshold-switched cell (V), whatever current it carries.
    g_amorphous : float
        Conductance (S) below which a cell counts as amorphous (threshold switching,
        sinh conduction); the board model's RESET floor is ~0.1 uS, its SET level ~11 uS.
    v_nl_amorphous, v_nl_crystalline : float
        Voltage scales (V) of the sinh conduction of amorphous and crystalline cells; the
        crystalline one lets a SET cell reach its ~180 uA melting current near 2.4 V.
    """

    v_th_mean: float = 1.0
    v_th_std: float = 0.05
    v_hold: float = 0.5
    g_amorphous: float = 2e-6
    v_nl_amorphous: float = 0.3
    v_nl_crystalline: float = 0.6


class ProbedDevice(ABC):
    """One device of a board model's population, wired to an SMU.

    Parameters
    ----------
    model : DeviceModel
        The board's device model (its parameters are the device's).
    iv : IVParams
        What the DC I-V needs beyond the model.
    rng : numpy.random.Generator
        Source of every random draw (fabrication, switching, noise).
    """

    def __init__(self, model: DeviceModel, iv: IVParams, rng: np.random.Generator) -> None:
        self.model = model
        self.iv = iv
        self._rng = rng
        self.state = model.new_state((1,), rng)
        self.time = 0.0
        """Time the device has spent under the probes (s): ``dwell`` per point."""

    @property
    def g(self) -> float:
        """Small-signal conductance now (S), without read noise."""
        return self._conductance(read_noise=False)

    def apply(self, v: float, i_limit: float) -> tuple[float, float]:
        """Source v with a current limit for one point; return what the SMU measures.

        Parameters
        ----------
        v : float
            Programmed source voltage (V).
        i_limit : float
            Current limit (compliance, A), > 0.

        Returns
        -------
        v_dev : float
            Voltage actually across the device (V); below ``|v|`` in compliance.
        i : float
            Measured current (A); exactly ``+-i_limit`` in compliance, never beyond.
        """
        v_dev, i = self._conduct(self.g, v, i_limit)
        width = np.array([self.iv.dwell / self.iv.substeps])
        for _ in range(self.iv.substeps):
            pulse = self._pulse(v_dev, i)
            if pulse is None:
                break
            before = self.model.programmed_conductance(self.state)[0]
            kind, amplitude = pulse
            self.model.apply_pulses(
                self.state, _ONE, np.array([kind]), np.array([amplitude]), width, self.time,
                self._rng,
            )  # fmt: skip
            if self.model.programmed_conductance(self.state)[0] == before:
                break
            self._switched(kind)
            v_dev, i = self._conduct(self.g, v, i_limit)
        self.time += self.iv.dwell
        if abs(i) >= i_limit:
            return v_dev, i  # regulated by the SMU: exact
        _, i = self._conduct(self._conductance(read_noise=True), v_dev, math.inf)
        i += self.iv.noise_floor * self._rng.standard_normal()
        return v_dev, float(np.clip(i, -i_limit, i_limit))

    def _conductance(self, *, read_noise: bool) -> float:
        g_uS = self.model.conductance(self.state, self.time, self._rng, read_noise=read_noise)
        return max(1e-6 * float(g_uS[0]), 1e-15)  # a read noise draw may reach 0

    def _limited(
        self, g: float, v: float, i_limit: float, v_nl: float | None
    ) -> tuple[float, float]:
        i = sinh_current(g, v, v_nl)
        if abs(i) <= i_limit:
            return v, i
        i = math.copysign(i_limit, v)
        return sinh_voltage(g, i, v_nl), i

    @abstractmethod
    def _conduct(self, g: float, v: float, i_limit: float) -> tuple[float, float]:
        """Voltage across the device (V) and its current (A) at conductance g, under i_limit."""

    @abstractmethod
    def _pulse(self, v_dev: float, i: float) -> tuple[int, float] | None:
        """The pulse (kind, model amplitude) a point at v_dev carrying i is, or None."""

    def _switched(self, kind: int) -> None:  # noqa: B027 (a hook: most devices need none)
        """Called after a pulse of ``kind`` changed the device."""


class ProbedRRAM(ProbedDevice):
    """A bipolar HfOx RRAM device (1R) of the board's population, as fabricated.

    Positive points act as FORM pulses (a FORM pulse on a formed device is a SET pulse,
    as on the board), negative ones as RESET pulses of their magnitude.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    params : RRAMParams, optional
        The board model's parameters (a model file's ``model_params``).
    iv : RRAMIVParams, optional
        DC conduction.
    formed : bool
        Start formed; by default the device is unformed (a probe station's fresh device),
        whatever ``params.formed_at_start`` (a chip preset's convenience) says.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        params: RRAMParams | None = None,
        iv: RRAMIVParams | None = None,
        *,
        formed: bool = False,
    ) -> None:
        params = dataclasses.replace(params or RRAMParams(), formed_at_start=formed)
        super().__init__(RRAMDevice(params), iv or RRAMIVParams(), rng)

    def _conduct(self, g: float, v: float, i_limit: float) -> tuple[float, float]:
        iv = self.iv
        return self._limited(g, v, i_limit, None if g >= iv.g_ohmic else iv.v_nl_unformed)

    def _pulse(self, v_dev: float, i: float) -> tuple[int, float] | None:
        if v_dev > 0:
            return PulseKind.FORM, v_dev
        if v_dev < 0:
            return PulseKind.RESET, -v_dev
        return None


class ProbedPCM(ProbedDevice):
    """A mushroom-cell PCM device (1R) of the board's population, as fabricated (SET).

    The current a point drives through the cell is the programming current of the pulse
    model: at or above the cell's melting current (its fabricated ``i_reset``) a point is
    a RESET pulse of that current, leaving the cell at the model's history-free RESET
    level for it (a DC point cannot quench: taking the quenched level at once simplifies
    a ns RESET pulse); below it, a SET pulse (crystallizing above the model's minimum SET
    current).  RESET therefore needs a current limit above the melting current, and SET
    one below it.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random draw.
    params : PCMParams, optional
        The board model's parameters.
    iv : PCMIVParams, optional
        DC conduction and threshold switching.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        params: PCMParams | None = None,
        iv: PCMIVParams | None = None,
    ) -> None:
        super().__init__(PCMDevice(params), iv or PCMIVParams(), rng)
        self._draw_threshold()

    def _draw_threshold(self) -> None:
        self.v_th = float(self._rng.normal(self.iv.v_th_mean, self.iv.v_th_std))

    @property
    def amorphous(self) -> bool:
        """Whether the cell conducts as amorphous (below ``iv.g_amorphous``)."""
        return self.g < self.iv.g_amorphous

    def _conduct(self, g: float, v: float, i_limit: float) -> tuple[float, float]:
        iv = self.iv
        if g >= iv.g_amorphous:
            return self._limited(g, v, i_limit, iv.v_nl_crystalline)
        if abs(v) >= self.v_th and math.isfinite(i_limit):
            # Threshold switching: the cell snaps on and the compliance sets its current.
            return math.copysign(min(abs(v), iv.v_hold), v), math.copysign(i_limit, v)
        return self._limited(g, v, i_limit, iv.v_nl_amorphous)

    def _pulse(self, v_dev: float, i: float) -> tuple[int, float] | None:
        if i == 0:
            return None
        # A current that melts the cell (its fabricated i_reset) never leaves it crystalline.
        i_uA = 1e6 * abs(i)
        return PulseKind.RESET if i_uA >= self.state["i_reset"][0] else PulseKind.SET, i_uA

    def _switched(self, kind: int) -> None:
        if kind == PulseKind.RESET:
            self._draw_threshold()


DEVICES: dict[str, type[ProbedDevice]] = {"rram": ProbedRRAM, "pcm": ProbedPCM}
"""Probed device models by device type, as the simulator's ``--device`` option spells
them; each is built as ``DEVICES[name](rng, params)`` with the board model's params."""

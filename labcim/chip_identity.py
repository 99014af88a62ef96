"""`ChipIdentity`: what a board says its chip is, parsed once from IDENTIFY, in one shape.

Everything in labcim that needs a chip's geometry, device type or limits takes a
`ChipIdentity`: the devices (geometry and limit checks before sending), the plans (they
record it as ``board_identity``), the write-verify strategies, calibration, the network
engine (the ADC gain range the board reports).  It is parsed from the wire's IDENTIFY
reply (`from_identify`, docs/protocol.md) and from a run's recorded ``board_identity``
(`from_record`, the shape `record` writes), so a recorded run and a live board are read
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RECORD_KEYS = (
    "model",
    "chip",
    "device_type",
    "n_cores",
    "rows",
    "cols",
    "devices_per_polarity",
    "g_max",
    "limits",
    "simulated",
)
"""Keys of a run's ``board_identity`` (`ChipIdentity.record`), besides ``sim_chip``."""


class IdentityError(ValueError):
    """An IDENTIFY reply or recorded identity without what labcim needs (naming it)."""


@dataclass(frozen=True)
class ChipIdentity:
    """A board and its chip, as the board describes them.

    Attributes
    ----------
    model : str
        The board's model name (IDENTIFY ``board``).
    chip : str
        The chip's name (a simulated chip's preset).
    device_type : str
        ``"pcm"`` or ``"rram"``.
    n_cores, rows, cols : int
        Number of cores and crossbar size of each.
    devices_per_polarity : int
        Devices per polarity of a unit cell (1 or 2).
    g_max : float
        Nominal largest conductance of one device (uS).
    limits : mapping
        The safe limits the board reported: ``amplitude_unit``, ``set_max``,
        ``reset_max``, ``form_max`` (uA or V), ``width_min``, ``width_max`` (s),
        ``read_voltage_max`` (V), and optionally ``adc_gain_min``, ``adc_gain_max``.
    simulated : bool
        Whether the board says it is simulated.
    simulator : mapping, optional
        A simulated board's ``simulator`` fields of the same reply (spec, clock,
        generator fingerprint, core configurations): the chip's state at that reply,
        what a replay rebuilds it from.  None for real hardware.
    """

    model: str
    chip: str
    device_type: str
    n_cores: int
    rows: int
    cols: int
    devices_per_polarity: int
    g_max: float
    limits: Mapping[str, Any] = field(default_factory=dict)
    simulated: bool = False
    simulator: Mapping[str, Any] | None = None

    @classmethod
    def from_identify(cls, reply: Mapping[str, Any]) -> ChipIdentity:
        """The identity of an IDENTIFY reply (``drivers.board.BoardClient.info``).

        Raises
        ------
        IdentityError
            A field labcim needs is missing (naming it).
        """
        chip = _field(reply, "chip", "IDENTIFY reply")
        where = "IDENTIFY reply chip"
        return cls(
            model=str(_field(reply, "board", "IDENTIFY reply")),
            chip=str(_field(chip, "chip", where)),
            device_type=str(_field(chip, "device_type", where)),
            n_cores=int(_field(chip, "cores", where)),
            rows=int(_field(chip, "rows", where)),
            cols=int(_field(chip, "cols", where)),
            devices_per_polarity=int(_field(chip, "devices_per_polarity", where)),
            g_max=float(_field(chip, "g_max_uS", where)),
            limits=dict(_field(chip, "limits", where)),
            simulated=bool(reply.get("simulated", False)),
            simulator=reply.get("simulator"),
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ChipIdentity:
        """The identity a run recorded (its ``board_identity``, as `record` writes it).

        Raises
        ------
        IdentityError
            A key is missing (naming it).
        """
        values = {k: _field(record, k, "board_identity") for k in RECORD_KEYS}
        return cls(**values, simulator=record.get("sim_chip"))

    def record(self) -> dict[str, Any]:
        """The identity as a run records it (``board_identity``): `RECORD_KEYS`, plus
        ``sim_chip`` for a simulated chip that reported its state."""
        out = {k: getattr(self, k) for k in RECORD_KEYS}
        out["limits"] = dict(self.limits)
        if self.simulator is not None:
            out["sim_chip"] = dict(self.simulator)
        return out

    @property
    def adc_gain_range(self) -> tuple[float, float] | None:
        """The ``adc_gain`` settings the board accepts, (lowest, highest), if it says."""
        low, high = self.limits.get("adc_gain_min"), self.limits.get("adc_gain_max")
        return None if low is None or high is None else (float(low), float(high))


def _field(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise IdentityError(f"{where} has no {key!r}: not a labcim board identity")
    return mapping[key]

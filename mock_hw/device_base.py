"""Pieces shared by the device models: parameters, flat indexing, polynomials."""

from __future__ import annotations

import dataclasses
from typing import Any, Self

import numpy as np

from mock_hw.devices import DeviceState, Index


@dataclasses.dataclass(frozen=True)
class DeviceParams:
    """Base of the frozen parameter dataclasses: plain-dict round trip, strict on keys.

    Fields shared by every technology (each off, or at its former value, by default):

    read_noise_exponent : float
        Conductance dependence of the short-term read noise: relative std
        ``read_noise_rel * (|g| / g_max)^-k`` (0: flat, the default; Nandakumar et al.
        2019 fit k = 0.65 for the PCM 1/f amplitude).
    read_noise_rel_max : float
        Cap of that relative std (Nandakumar et al. 2019: 0.2).
    endurance : float
        Median number of pulses a device survives (log-normal across devices); 0 turns
        wear off (the default: nothing is drawn).  A worn device is stuck.
    endurance_log_std : float
        Log-normal spread of the endurance across devices (*chosen*).
    worn_high_share : float
        Share of worn devices stuck at their high conductance (PCM: stuck SET, RRAM: at
        g_max), the rest at their low one (PCM: stuck RESET, RRAM: at g_min).
    activation_energy : float
        Arrhenius activation energy (eV) of the time-dependent processes (drift,
        relaxation, 1/f accumulation) at the core's ``temperature`` (*assumed*).
    """

    read_noise_exponent: float = 0.0
    read_noise_rel_max: float = 0.2
    endurance: float = 0.0
    endurance_log_std: float = 0.5
    worn_high_share: float = 0.5
    activation_energy: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a dict; missing keys keep their defaults.

        Raises
        ------
        ValueError
            If ``data`` has keys that are not fields (all of them are named), so a typo in
            a model file or calibration result never passes silently.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} parameter(s): {', '.join(unknown)}")
        return cls(**data)


def flat_state(state: DeviceState, index: Index) -> tuple[DeviceState, Index]:
    """1-D views of the state arrays and the matching flat index.

    Gathering and scattering many fields through one flat index is several times faster
    than through a tuple of five index arrays (numpy recomputes the flat offsets on every
    access).  Arrays that are not C-contiguous (views) keep the original index, so writes
    always reach the caller's arrays.
    """
    arrays = list(state.values())
    if not all(a.flags.c_contiguous for a in arrays):
        return state, index
    flat = np.ravel_multi_index(index, arrays[0].shape)
    return {k: a.reshape(-1) for k, a in state.items()}, (flat,)


def poly_ascending(x: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """Polynomial with ascending ``coeffs`` at ``x``, in the dtype of ``x``.

    In-place Horner: numpy's ``polyval`` is several times slower on millions of devices
    and promotes float32 to float64.
    """
    out = np.full_like(x, coeffs[-1])
    for c in coeffs[-2::-1]:
        out *= x
        out += c
    return out

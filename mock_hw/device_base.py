"""Pieces shared by the device models: parameters, flat indexing, polynomials."""

from __future__ import annotations

import dataclasses
from typing import Any, Self

import numpy as np

from mock_hw.devices import DeviceState, Index


@dataclasses.dataclass(frozen=True)
class DeviceParams:
    """Base of the frozen parameter dataclasses: plain-dict round trip, strict on keys."""

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

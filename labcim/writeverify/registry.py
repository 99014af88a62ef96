"""Build a write-verify strategy by name from what the board's identify() reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from labcim.plan_args import Integer
from labcim.writeverify.base import Strategy, check_limits, check_positive
from labcim.writeverify.ispp import ISPP, ISPPParams
from labcim.writeverify.nominal import ODP, MaxFill
from labcim.writeverify.partial_set import PartialSetParams
from labcim.writeverify.tdp import TDP

_CLASSES: dict[str, tuple[type[Strategy], type, tuple[str, ...]]] = {
    "tdp": (TDP, PartialSetParams, ("pcm",)),
    "max-fill": (MaxFill, PartialSetParams, ("pcm",)),
    "odp": (ODP, PartialSetParams, ("pcm",)),
    "ispp": (ISPP, ISPPParams, ("rram",)),
}

STRATEGIES: tuple[str, ...] = tuple(_CLASSES)
"""Names accepted by :func:`make_strategy`."""


def make_strategy(
    name: str,
    *,
    devices_per_polarity: int,
    device_type: str,
    limits: Mapping[str, Any],
    g_max: float,
    tolerance: float | None = None,
    max_iterations: int = 20,
    **params: Any,
) -> Strategy:
    """A write-verify strategy ready for ``start``/``step``.

    Parameters
    ----------
    name : str
        One of :data:`STRATEGIES`: ``"tdp"``, ``"max-fill"``, ``"odp"`` (PCM),
        ``"ispp"`` (RRAM).
    devices_per_polarity : int
        Devices per polarity of the chip's unit cell (1 or 2).
    device_type : str
        ``"pcm"`` or ``"rram"`` (the board's identify ``device_type``).
    limits : mapping
        The board's identify ``limits`` (amplitude_unit, set_max, reset_max, form_max,
        width_min, width_max).
    g_max : float
        Nominal maximum conductance of one device (uS), identify ``g_max_uS``.
    tolerance : float, optional
        Allowed |read-back - goal| per cell (uS); default ``strategy.default_tolerance``:
        PCM 2.5 % of the cell's nominal maximum (used devices x g_max), RRAM NeuRRAM's
        +-1 uS per device (Wan et al. 2022).
    max_iterations : int
        Largest number of pulse batches (>= 1).
    **params
        Pulse parameters: fields of
        :class:`~labcim.writeverify.partial_set.PartialSetParams` (PCM strategies) or
        :class:`~labcim.writeverify.ispp.ISPPParams` (ISPP).

    Raises
    ------
    ValueError
        Naming the bad argument and, for names, the allowed values.
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown write-verify strategy {name!r}; allowed: {list(STRATEGIES)}")
    cls, params_cls, types = _CLASSES[name]
    if device_type not in types:
        raise ValueError(f"strategy {name!r} programs {list(types)} devices, not {device_type!r}")
    if devices_per_polarity not in (1, 2) or isinstance(devices_per_polarity, bool):
        raise ValueError(f"devices_per_polarity = {devices_per_polarity!r}; allowed: [1, 2]")
    Integer(1)("max_iterations", max_iterations)
    allowed = [f.name for f in dataclasses.fields(params_cls)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} of {name!r}; allowed: {allowed}")
    if tolerance is not None:
        check_positive("tolerance", tolerance)
    return cls(
        params_cls(**params),
        devices_per_polarity=devices_per_polarity,
        g_max=check_positive("g_max", g_max),
        tolerance=tolerance,
        max_iterations=max_iterations,
        limits=check_limits(limits, cls.unit),
    )


def strategy_for_chip(name: str, identity: Mapping[str, Any], **options: Any) -> Strategy:
    """:func:`make_strategy` for the chip described by ``identity``.

    Parameters
    ----------
    name : str
        One of :data:`STRATEGIES`.
    identity : mapping
        The chip part of the board's identify reply (``Chip.identify()``):
        ``devices_per_polarity``, ``device_type``, ``limits``, ``g_max_uS``.
    **options
        Further :func:`make_strategy` arguments (tolerance, max_iterations, params).
    """
    return make_strategy(
        name,
        devices_per_polarity=identity["devices_per_polarity"],
        device_type=identity["device_type"],
        limits=identity["limits"],
        g_max=identity["g_max_uS"],
        **options,
    )

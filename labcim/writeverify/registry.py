"""Write-verify strategies by name, through the ``labcim.strategies`` entry-point group.

The project registers its own (``tdp``, ``max-fill``, ``odp``, ``ispp``) in its
``pyproject.toml``; a lab's package registers a `~labcim.writeverify.base.Strategy`
subclass the same way and every plan that programs takes its name::

    [project.entry-points."labcim.strategies"]
    my-tdp = "mylab.strategies:MyTDP"      # MyTDP.name == "my-tdp"
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from labcim.chip_identity import ChipIdentity
from labcim.plan_args import Integer
from labcim.registry import load_classes
from labcim.writeverify.base import Strategy, check_limits, check_positive

STRATEGIES_GROUP = "labcim.strategies"
"""Entry-point group of write-verify strategy classes."""


@functools.cache
def strategy_classes() -> dict[str, type[Strategy]]:
    """The registered strategy classes by name (read once per process).

    Raises
    ------
    TypeError
        An entry point that is not a ``Strategy`` subclass, or whose name is not its
        class's ``name`` (naming it).
    LookupError
        One name registered twice.
    """
    classes = load_classes(STRATEGIES_GROUP, "write-verify strategy", Strategy)
    for name, cls in classes.items():
        if getattr(cls, "name", None) != name:
            raise TypeError(
                f"{STRATEGIES_GROUP} entry point {name}: {cls.__qualname__}.name is "
                f"{getattr(cls, 'name', None)!r}, not {name!r}"
            )
    return classes


STRATEGIES: tuple[str, ...] = tuple(strategy_classes())
"""Names accepted by :func:`make_strategy` (those registered, sorted)."""


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
        ``"ispp"`` (RRAM), or one a lab's package registers.
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
    classes = strategy_classes()
    if name not in classes:
        raise ValueError(f"unknown write-verify strategy {name!r}; allowed: {list(classes)}")
    cls = classes[name]
    params_cls, types = cls.params_class, cls.device_types
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


def strategy_for_chip(name: str, identity: ChipIdentity, **options: Any) -> Strategy:
    """:func:`make_strategy` for the chip described by ``identity``.

    Parameters
    ----------
    name : str
        One of :data:`STRATEGIES`.
    identity : ChipIdentity
        The board's (``board.identity``, or a run's recorded ``board_identity`` through
        ``ChipIdentity.from_record``).
    **options
        Further :func:`make_strategy` arguments (tolerance, max_iterations, params).
    """
    return make_strategy(
        name,
        devices_per_polarity=identity.devices_per_polarity,
        device_type=identity.device_type,
        limits=identity.limits,
        g_max=identity.g_max,
        **options,
    )

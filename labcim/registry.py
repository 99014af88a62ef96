"""What a package adds to labcim, found by name through entry-point groups.

``labcim/`` never imports ``plans/``, and a lab extends labcim without touching it: the
project's own plans and SMU models, and any lab package's, are registered under an
entry-point group in their ``pyproject.toml``::

    [project.entry-points."labcim.plans"]
    tdp_program = "plans.programming:tdp_program"

and become usable by name (in campaign files, ``labcim run``, `get_plan`, ...).  Every
group is read by `registered`, which refuses one name claimed by two packages.

========================  ===================================================
group                     what an entry point names
========================  ===================================================
``labcim.plans``          a plan function (`get_plan`)
``labcim.smu_models``     an SMU driver class (`labcim.connection.smu_models`)
``labcim.strategies``     a write-verify strategy class (`labcim.writeverify`)
``labcim.transports``     a board URL scheme (`labcim.transports`)
``labcim.tasks``          a reference task for ``network_inference``
========================  ===================================================
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

#: The entry-point group that plan packages fill.
PLANS_GROUP = "labcim.plans"
#: The entry-point group of reference tasks: callables returning a
#: ``labcim.network.tasks.Task`` (a trained model and its data split).
TASKS_GROUP = "labcim.tasks"


class UnknownNameError(LookupError):
    """No entry point of a group has the name asked for (the message lists those that do)."""


class UnknownPlanError(UnknownNameError):
    """No plan is registered under the name asked for (the message lists those that are)."""


def registered(group: str, kind: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name, sorted, without loading them.

    Parameters
    ----------
    group : str
        Entry-point group, e.g. ``"labcim.plans"``.
    kind : str
        What an entry point names, for messages (``"plan"``).

    Raises
    ------
    LookupError
        If two installed packages register one name differently: which one would be
        used would depend on install order, so neither is chosen.
    """
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=group):
        other = found.get(entry.name)
        if other is not None and other.value != entry.value:
            raise LookupError(
                f"{kind} {entry.name!r} is registered twice in {group!r}: "
                f"{other.value} and {entry.value}"
            )
        found[entry.name] = entry
    return dict(sorted(found.items()))


def load_registered(
    group: str, kind: str, name: str, error: type[Exception] = UnknownNameError
) -> Any:
    """The object the entry point ``name`` of ``group`` names, loaded.

    Raises
    ------
    error
        If no entry point has that name; the message lists those that do.
    LookupError
        A name registered twice (`registered`).
    """
    found = registered(group, kind)
    if name not in found:
        names = ", ".join(found) or f"none (no package registers {group!r})"
        raise error(f"unknown {kind} {name!r}; available {kind}s: {names}")
    return found[name].load()


def load_classes(group: str, kind: str, base: type) -> dict[str, type]:
    """Every entry point of ``group`` loaded, by name; each must name a ``base`` subclass.

    Raises
    ------
    TypeError
        An entry point that names something else (naming it and ``base``).
    LookupError
        A name registered twice (`registered`).
    """
    classes = {}
    for name, entry in registered(group, kind).items():
        cls = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"{group} entry point {name} = {entry.value} is not a "
                f"{base.__module__}.{base.__qualname__} subclass"
            )
        classes[name] = cls
    return classes


def available_plans() -> dict[str, EntryPoint]:
    """The registered plans by name, sorted, without importing them (`registered`)."""
    return registered(PLANS_GROUP, "plan")


def get_plan(name: str) -> Callable[..., object]:
    """The plan function registered as ``name``.

    Raises
    ------
    UnknownPlanError
        If no plan has that name; the message lists the available ones.
    """
    return load_registered(PLANS_GROUP, "plan", name, UnknownPlanError)

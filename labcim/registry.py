"""Plans by name, through the ``labcim.plans`` entry-point group.

``labcim/`` never imports ``plans/``: the project's own plans, and any lab's package,
register plan functions under this group in their ``pyproject.toml``::

    [project.entry-points."labcim.plans"]
    tdp_program = "plans.programming:tdp_program"

and become usable by name in campaign files, ``labcim run`` and `get_plan`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

#: The entry-point group that plan packages fill.
PLANS_GROUP = "labcim.plans"


class UnknownPlanError(LookupError):
    """No plan is registered under the name asked for (the message lists those that are)."""


def available_plans() -> dict[str, EntryPoint]:
    """The registered plans by name, sorted, without importing them.

    Raises
    ------
    LookupError
        If two installed packages register the same name: which one runs would
        depend on install order, so neither is chosen.
    """
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=PLANS_GROUP):
        other = found.get(entry.name)
        if other is not None and other.value != entry.value:
            raise LookupError(
                f"plan {entry.name!r} is registered twice in {PLANS_GROUP!r}: "
                f"{other.value} and {entry.value}"
            )
        found[entry.name] = entry
    return dict(sorted(found.items()))


def get_plan(name: str) -> Callable[..., object]:
    """The plan function registered as ``name``.

    Raises
    ------
    UnknownPlanError
        If no plan has that name; the message lists the available ones.
    """
    plans = available_plans()
    if name not in plans:
        names = ", ".join(plans) or f"none (no package registers {PLANS_GROUP!r})"
        raise UnknownPlanError(f"unknown plan {name!r}; available plans: {names}")
    return plans[name].load()

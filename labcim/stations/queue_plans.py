"""labcim's plans as bluesky-queueserver sees them: JSON arguments, checked at ``item_add``.

A queue item carries JSON: nested lists, ``{file: w.npy}`` references, strings.  For
each plan of the ``labcim.plans`` entry points, `queue_plan` makes the plan the station
registers: it converts the item's arguments with `labcim.plan_args.PlanSignature` (the
same conversion as campaigns and ``labcim run``) and runs the plan on the station's
board.  Queueserver builds its list of allowed plans from that function's signature
and its ``_custom_parameter_annotation_`` (the attribute queueserver's
``parameter_annotation_decorator`` sets), which says:

- the board parameter is the station's device, by name, and defaults to it, so items
  need not name it (queueserver turns the name into the device object);
- every other parameter's type is ``typing.Annotated[typing.Any, <validator>]`` where
  the validator is `validator` of this module: queueserver evaluates this annotation in
  the RE Manager when an item is added and runs its pydantic model, so a value the
  plan would refuse (wrong type, a failed `labcim.plan_args.Check`, an unreadable
  ``{file: ...}``) is refused at ``item_add`` with the plan's own message.

Checks that need the board's identity or several arguments at once (weights that fit
the cores, ``v_stop > v_start``) run when the plan starts, as everywhere else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from labcim.plan_args import PlanSignature
from labcim.registry import available_plans, get_plan

#: queueserver's name for the custom annotation its decorator stores on a plan.
ANNOTATION_ATTR = "_custom_parameter_annotation_"
_THIS = __name__


def queue_plan(name: str, plan: Callable[..., Any], device: str, base_dir: Path) -> Callable:
    """The plan ``name`` as a station registers it (see the module docstring).

    Parameters
    ----------
    name : str
        Registered plan name.
    plan : callable
        The plan, ``plan(board, **arguments)``.
    device : str
        Name of the station's device in the worker namespace (``"board"``).
    base_dir : Path
        Where relative ``{file: ...}`` references and paths are found.
    """
    signature = PlanSignature(name, plan)
    parameters = list(inspect.signature(plan).parameters.values())
    board = parameters[0].replace(default=device, annotation=inspect.Parameter.empty)
    rest = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=inspect.Parameter.empty)
        for p in parameters[1:]
        if p.name in signature.parameters
    ]

    def queued(*args: Any, **kwargs: Any) -> Generator:
        bound = queued.__signature__.bind(*args, **kwargs)
        instrument = bound.arguments.pop(signature.board, device)
        converted = signature.bind(bound.arguments, base_dir)
        return (yield from plan(instrument, **converted))

    functools.update_wrapper(queued, plan)
    del queued.__wrapped__  # queueserver must see this signature, not the plan's
    queued.__signature__ = inspect.Signature([board, *rest])
    annotation = {
        signature.board: {
            "annotation": "Instrument",
            "devices": {"Instrument": [device]},
            "default": device,
        }
    }
    for p in rest:
        annotation[p.name] = {
            "annotation": f"typing.Annotated[typing.Any, __import__({_THIS!r}, "
            f"fromlist=['validator']).validator({name!r}, {p.name!r})]"
        }
    setattr(queued, ANNOTATION_ATTR, {"parameters": annotation})
    return queued


def queue_plans(device: str, base_dir: Path) -> dict[str, Callable]:
    """Every plan of the ``labcim.plans`` entry points as a station registers it."""
    return {
        name: queue_plan(name, entry.load(), device, base_dir)
        for name, entry in available_plans().items()
    }


@functools.cache
def _signature(name: str) -> PlanSignature:
    return PlanSignature(name, get_plan(name))


def warm_up() -> None:
    """Load every plan and its signature, and pydantic, so that `validator` is fast."""
    import pydantic  # noqa: F401  (imported now rather than in the first validation)

    for name in available_plans():
        _signature(name)


def validator(plan: str, parameter: str) -> Any:
    """A pydantic validator of one argument of ``plan``, for queueserver's annotations.

    It converts the JSON value as the station's plan will (`PlanSignature.convert`,
    relative files from the current directory, the station's) and returns the value
    unchanged: queueserver compares what pydantic returns with what it was given.
    """
    from pydantic import AfterValidator

    def check(value: Any) -> Any:
        _signature(plan).convert(parameter, value, Path.cwd())
        return value

    return AfterValidator(check)

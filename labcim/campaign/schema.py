"""Campaign files: loading, validation before anything runs, and expansion into steps.

The format is described with a full example in ``docs/campaigns.md``.  Every mistake
found is reported at once, each naming its field (``chip``, ``steps[2].args.tolerance``,
steps numbered from 1 like their keys) and, where there is a choice, the allowed values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal

import numpy as np
import yaml

from labcim.bounded_yaml import (
    Limits,
    YAMLLimitError,
    load_bounded,
    one_line,
    read_bounded,
)
from labcim.hdf5.output import ForeignFileError, check_output
from labcim.plan_args import (
    STEP_METADATA,
    ArgumentError,
    PlanSignature,
    metadata_errors,
    resolve_path,
)
from labcim.registry import UnknownPlanError, get_plan
from labcim.suspenders import check_board, suspend_section

#: Bounds on a campaign file: 1 MiB, 32 levels, 20 000 values with aliases expanded.
LIMITS = Limits()
#: Most steps a campaign may expand to.
MAX_STEPS = 10_000

FailurePolicy = Literal["stop", "continue"]
FAILURE_POLICIES: tuple[FailurePolicy, ...] = ("stop", "continue")

_TOP_FIELDS = {
    "id": "a name that stays the same when the file is edited (default: hash of the file)",
    "chip": "the chip URL given to labcim.connect, or 'none'",
    "chip_options": "keyword options of labcim.connect",
    "out": "results location (HDF5), relative to the campaign file",
    "metadata": "added to every run's start document",
    "on_failure": "what a failed step does: " + " or ".join(FAILURE_POLICIES),
    "steps": "the plans to run, in order",
    "stations": "station names (or name: address mappings) to dispatch the steps to",
    "suspend": "link-health signals that suspend a step while above a threshold",
}
_STEP_FIELDS = ("plan", "args", "over", "station")

#: Why a campaign dispatched to stations has no ``suspend:`` section of its own.
DISPATCHED_SUSPEND = (
    "suspend: applies to campaigns run here; a station takes its own "
    "(labcim station --suspend '{retry_fraction: {above: 0.2}}')"
)


class CampaignError(ValueError):
    """A campaign that cannot run; ``errors`` holds one message per field, each naming it."""

    def __init__(self, source: str | Path, errors: list[str]) -> None:
        self.source = str(source)
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} error(s), nothing was run:\n{lines}")


@dataclass(frozen=True)
class Step:
    """One expanded step: a plan and its converted arguments.

    Attributes
    ----------
    index : int
        Position in the expanded campaign, from 1.
    key : str
        Stable name, e.g. ``"02-mvm_characterization[cores=3,read_modes=1-phase]"``: the
        entry's number in the file, the plan, and the values of its ``over`` arguments.
    digest : str
        Hash of the plan name and arguments: a resumed campaign counts a step as done
        only if its arguments are unchanged.
    """

    index: int
    key: str
    plan_name: str
    plan: Callable[..., Any] = field(repr=False)
    args: dict[str, Any]
    digest: str
    station: str = ""
    """The station the step must run on (``station:`` of its entry); "" for any."""

    def describe(self) -> str:
        """``key  name=value ...`` with arrays shown as their shape and dtype."""
        args = " ".join(f"{k}={_short(v)}" for k, v in self.args.items())
        return f"{self.key}  {args}".rstrip()


@dataclass(frozen=True)
class Campaign:
    """A validated campaign file with its steps expanded."""

    id: str
    path: Path
    chip: str
    chip_options: dict[str, Any]
    out: Path
    metadata: dict[str, Any]
    on_failure: FailurePolicy
    steps: tuple[Step, ...]
    stations: Any = None
    """The ``stations:`` section as written (`labcim.stations.registry.resolve` reads it)."""
    suspend: dict[str, dict[str, float]] = field(default_factory=dict)
    """`labcim.suspenders.LinkSuspender` options per ``board.fpga`` signal (``suspend:``)."""

    def step_metadata(self, step: Step) -> dict[str, Any]:
        """The start metadata of ``step``'s run: campaign metadata plus `STEP_METADATA`."""
        values = (self.id, str(self.path), step.key, step.index, len(self.steps), step.digest)
        return {**self.metadata, **dict(zip(STEP_METADATA, values, strict=True))}


def load_campaign(path: str | Path) -> Campaign:
    """Read, validate and expand a campaign file (YAML, safe loading, `LIMITS`).

    Validation takes well under a second and little memory on any file: the file's
    size, nesting and alias expansion are bounded (`LIMITS`), and so is the number of
    expanded steps (`MAX_STEPS`).

    Raises
    ------
    CampaignError
        Listing every mistake found, each naming its field; nothing has run.
    """
    path = Path(path)
    try:
        text = read_bounded(path, LIMITS)
        document = load_bounded(text, LIMITS)
    except OSError as exc:
        raise CampaignError(path, [f"cannot read the file: {exc.strerror}"]) from None
    except YAMLLimitError as exc:
        raise CampaignError(path, [f"beyond the limits of a campaign file: {exc}"]) from None
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise CampaignError(path, [f"not valid YAML: {one_line(exc)}"]) from None
    errors: list[str] = []
    campaign = _validate(document, path, hashlib.sha256(text).hexdigest()[:12], errors)
    if errors or campaign is None:
        raise CampaignError(path, errors)
    return campaign


def _validate(document: Any, path: Path, digest: str, errors: list[str]) -> Campaign | None:
    if not isinstance(document, dict):
        errors.append("the file must be a mapping of fields: " + ", ".join(_TOP_FIELDS))
        return None
    for name in document:
        if name not in _TOP_FIELDS:
            errors.append(f"{name}: unknown field; allowed: {', '.join(_TOP_FIELDS)}")
    for name in ("chip", "out", "steps"):
        if document.get(name) is None:
            errors.append(f"{name}: missing ({_TOP_FIELDS[name]})")
    chip = _typed(document, "chip", str, "a URL string", errors)
    out = _typed(document, "out", str, "a path string", errors)
    if out:
        try:
            check_output(resolve_path(path.parent, out))
        except ForeignFileError as exc:
            errors.append(f"out: {exc}")
    campaign_id = _typed(document, "id", str, "a string", errors) or digest
    options = _typed(document, "chip_options", dict, "a mapping", errors) or {}
    metadata = _metadata(_typed(document, "metadata", dict, "a mapping", errors) or {}, errors)
    policy = document.get("on_failure", "stop")
    if policy not in FAILURE_POLICIES:
        allowed = ", ".join(map(repr, FAILURE_POLICIES))
        errors.append(f"on_failure: must be one of {allowed}; got {policy!r}")
    entries = _typed(document, "steps", list, "a list of steps", errors)
    if entries == []:
        errors.append("steps: empty; give at least one step")
    steps = _expand(entries or [], path.parent, errors)
    suspend = _suspend(document, errors)
    if errors:
        return None
    return Campaign(
        id=campaign_id,
        path=path.resolve(),
        chip=chip,
        chip_options=options,
        out=resolve_path(path.parent, out),
        metadata=metadata,
        on_failure=policy,
        steps=tuple(steps),
        stations=document.get("stations"),
        suspend=suspend,
    )


def _typed(document: dict, name: str, kind: type, expected: str, errors: list[str]) -> Any:
    value = document.get(name)
    if value is not None and not isinstance(value, kind):
        errors.append(f"{name}: expected {expected}; got {value!r}")
        return None
    return value


def _suspend(document: dict, errors: list[str]) -> dict[str, dict[str, float]]:
    section = document.get("suspend")
    if section is None:
        return {}
    try:
        check_board(document.get("chip"), "suspend")
    except ValueError as exc:
        errors.append(str(exc))
    if document.get("stations") is not None:
        errors.append(DISPATCHED_SUSPEND)
    try:
        return suspend_section(section)
    except ArgumentError as exc:
        errors += exc.errors
        return {}


def _metadata(metadata: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    errors += metadata_errors(metadata, "metadata.")
    return metadata


def _expand(entries: list[Any], base_dir: Path, errors: list[str]) -> list[Step]:
    steps: list[Step] = []
    width = max(2, len(str(len(entries))))
    hashes: dict[int, str] = {}  # id(array) -> content hash, each array hashed once
    plans: dict[str, tuple[Callable[..., Any], PlanSignature] | str] = {}
    planned = 0  # steps of the entries so far, also those not expanded
    for number, entry in enumerate(entries, start=1):
        where = f"steps[{number}]"
        station = entry.get("station", "") if isinstance(entry, dict) else ""
        if not isinstance(station, str):
            errors.append(f"{where}.station: expected a station name; got {station!r}")
        checked = _check_entry(entry, where, base_dir, errors, plans)
        if checked is None:
            continue
        plan_name, plan, signature, converted, choices = checked
        count = math.prod(len(values) for values in choices.values())
        if planned <= MAX_STEPS < planned + count:  # said once, by the entry passing it
            sizes = " x ".join(str(len(values)) for values in choices.values())
            what = f"{where}.over: expands to {count} steps ({sizes})" if choices else where
            earlier = f", after {planned} steps before it" if planned else ""
            errors.append(f"{what}{earlier}; a campaign has at most {MAX_STEPS} steps (the limit)")
        planned += count
        if errors:  # a campaign that cannot run is not expanded further
            continue
        for combination in itertools.product(*choices.values()):
            varied = {name: given for name, (given, _) in zip(choices, combination, strict=True)}
            values = {name: value for name, (_, value) in zip(choices, combination, strict=True)}
            args = {**converted, **values}
            label = ",".join(f"{k}={_label(v)}" for k, v in varied.items())
            unfit = signature.together(args, f"{where} [{label}]: " if label else f"{where}: ")
            if unfit:  # one such step says it; its siblings most likely fail alike
                errors += unfit
                break
            key = f"{number:0{width}d}-{plan_name}" + (f"[{label}]" if label else "")
            digest = _digest(plan_name, args, hashes)
            steps.append(Step(len(steps) + 1, key, plan_name, plan, args, digest, str(station)))
    return steps


def _check_entry(
    entry: Any,
    where: str,
    base_dir: Path,
    errors: list[str],
    plans: dict[str, tuple[Callable[..., Any], PlanSignature] | str],
) -> (
    tuple[str, Callable[..., Any], PlanSignature, dict[str, Any], dict[str, list[tuple[Any, Any]]]]
    | None
):
    """Check one step entry: its plan, converted ``args``, and ``over`` choices.

    Returns the plan name, the plan and its signature, the converted arguments and, per
    ``over`` argument, its (value as given, converted value) pairs; None if ``entry``
    has errors.
    ``plans`` caches `_resolve` by plan name.
    """
    if not isinstance(entry, dict):
        errors.append(f"{where}: expected a mapping with {', '.join(_STEP_FIELDS)}; got {entry!r}")
        return None
    n_errors = len(errors)
    errors += [
        f"{where}.{name}: unknown field; allowed: {', '.join(_STEP_FIELDS)}"
        for name in entry
        if name not in _STEP_FIELDS
    ]
    args = _typed(entry, "args", dict, "a mapping of argument names to values", errors) or {}
    over = _typed(entry, "over", dict, "a mapping of argument names to lists", errors) or {}
    plan_name = entry.get("plan")
    if not isinstance(plan_name, str):
        errors.append(f"{where}.plan: missing or not a name; got {plan_name!r}")
        return None
    if plan_name not in plans:  # looking a plan up scans every installed package
        plans[plan_name] = _resolve(plan_name)
    resolved = plans[plan_name]
    if isinstance(resolved, str):
        errors.append(f"{where}.plan: {resolved}")
        return None
    plan, signature = resolved
    errors += [f"{where}.args.{m}" for m in signature.unknown(args)]
    errors += [f"{where}.over.{m}" for m in signature.unknown(over)]
    errors += [
        f"{where}.over.{name}: also given in {where}.args; give it in one place"
        for name in over
        if name in args
    ]
    errors += [
        f"{where}.args: missing required argument {name!r} of {plan_name}"
        for name in signature.missing([*args, *over])
    ]
    converted = {
        name: _converted(signature, name, value, f"{where}.args.{name}", base_dir, errors)
        for name, value in args.items()
    }
    choices = {}
    for name, values in over.items():
        if not isinstance(values, list) or not values:
            errors.append(f"{where}.over.{name}: expected a non-empty list; got {values!r}")
            continue
        labels = [_label(v) for v in values]
        if len(set(labels)) < len(labels):
            errors.append(f"{where}.over.{name}: repeated values in {values!r}")
        prefix = f"{where}.over.{name}"
        choices[name] = [
            (value, _converted(signature, name, value, f"{prefix}[{i}]", base_dir, errors))
            for i, value in enumerate(values, start=1)
        ]
    if len(errors) > n_errors:
        return None
    return plan_name, plan, signature, converted, choices


def _resolve(plan_name: str) -> tuple[Callable[..., Any], PlanSignature] | str:
    """The plan registered as ``plan_name`` and its signature, or why there is none."""
    try:
        plan = get_plan(plan_name)
        return plan, PlanSignature(plan_name, plan)
    except (UnknownPlanError, TypeError) as exc:
        return str(exc)
    except Exception as exc:  # the plan's package failed to import: say which plan
        return f"cannot load plan {plan_name!r}: {exc!r}"


def _converted(
    signature: PlanSignature, name: str, value: Any, where: str, base_dir: Path, errors: list[str]
) -> Any:
    try:
        return signature.convert(name, value, base_dir)
    except ValueError as exc:
        errors.append(f"{where}: {exc}")
        return None


def _label(value: Any) -> str:
    """A value as it appears in a step key: strings bare, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _digest(plan_name: str, args: Mapping[str, Any], hashes: dict[int, str]) -> str:
    """Hash of a step's plan and arguments; ``hashes`` caches array content hashes."""

    def canonical(value: Any) -> Any:
        return _canonical(value, hashes)

    text = json.dumps({"plan": plan_name, "args": args}, sort_keys=True, default=canonical)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(value: Any, hashes: dict[int, str]) -> Any:
    """JSON stand-in for what `json` cannot hold: arrays by content hash, paths as text."""
    if isinstance(value, np.ndarray):
        content = hashes.get(id(value))
        if content is None:  # the steps of an entry share its arrays: hash them once
            content = hashes[id(value)] = hashlib.sha256(
                np.ascontiguousarray(value).tobytes()
            ).hexdigest()
        return {"dtype": str(value.dtype), "shape": value.shape, "sha256": content}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot hash a {type(value).__name__}")


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<array {'x'.join(map(str, value.shape))} {value.dtype}>"
    return _label(value) if not isinstance(value, PurePath) else str(value)

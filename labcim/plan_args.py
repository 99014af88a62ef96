"""Check and convert plan arguments given as text (YAML values) against the plan's signature.

Campaign files and ``labcim run -p key=value`` give plain YAML values; a plan states
what it takes in its signature.  `PlanSignature` names unknown and missing arguments
and converts each value to its annotation, so mistakes surface before anything runs:

- ``int``, ``float`` (an int is accepted), ``bool``, ``str``; ``Path`` (relative to a
  base directory); ``Literal[...]`` (the allowed values are named); ``X | None``;
- ``list[X]``, ``Sequence[X]``, ``tuple[X, ...]``: a single value becomes a one-element
  list, so ``cores: 3`` means ``cores=[3]``;
- ``dict[K, V]``; ``np.ndarray``, ``npt.NDArray``, ``npt.ArrayLike``: nested lists, or
  ``{file: w.npy}`` / ``{file: w.npz, key: name}`` (loaded with ``allow_pickle=False``;
  this form is understood for every argument);
- anything else: an instance of the annotated class, or unchecked if not a class.

A plan states what a value must satisfy beyond its type with ``Annotated``: e.g.
``tolerance: Annotated[float | None, Positive()]``.  The `Check` objects are pure
functions of one value; the plans call the same ones, so ``labcim run``, campaigns and a
station's queue (at ``item_add``) refuse a bad value with the plan's own message.  What
only the arguments together can show (a batch size that must divide a count, a stop
above a start) a plan states with :func:`checks_together`; it is run on the converted
arguments, defaults filled in, before anything is connected.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, Union

import numpy as np
import numpy.typing as npt

from drivers.protocol import MAX_CLOCK

_SEQUENCES = (
    list,
    tuple,
    collections.abc.Sequence,
    collections.abc.Collection,
    collections.abc.Iterable,
)
_MAPPINGS = (dict, collections.abc.Mapping)
_ARRAY_LIKE = set(typing.get_args(npt.ArrayLike))
_ARRAY_FILE_KEYS = {"file", "key"}


class ArgumentError(ValueError):
    """Arguments that do not fit; ``errors`` holds one message per field, each naming it."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class Check:
    """A condition on one plan argument beyond its type (the ``Annotated`` metadata).

    ``check(name, value)`` returns the value (normalized, e.g. a numpy integer as int)
    or raises ValueError whose message names the argument, shows the value and says
    what is allowed.  ``None`` (an argument left at its default) is never checked.
    """

    def __call__(self, name: str, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Check):
    """An integer in ``[low, high]`` (no upper bound if ``high`` is None)."""

    low: int
    high: int | None = None

    def __call__(self, name: str, value: Any) -> int:
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if not ok or value < self.low or (self.high is not None and value > self.high):
            allowed = f"[{self.low}, {self.high}]" if self.high is not None else f">= {self.low}"
            raise ValueError(f"{name} = {value!r} must be an integer {allowed}")
        return int(value)


@dataclass(frozen=True)
class Number(Check):
    """A finite number, > 0 if ``positive``."""

    positive: bool = False

    def __call__(self, name: str, value: Any) -> float:
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or (self.positive and value <= 0):
            raise ValueError(
                f"{name} = {value!r} must be a finite number{' > 0' if self.positive else ''}"
            )
        return float(value)


@dataclass(frozen=True)
class Positive(Check):
    """A finite number > 0 (the write-verify strategies' own check of their parameters)."""

    def __call__(self, name: str, value: Any) -> float:
        from labcim.writeverify.base import check_positive

        return check_positive(name, value)


@dataclass(frozen=True)
class NonNegative(Check):
    """A finite number >= 0, in ``units`` (shown in the message)."""

    units: str = ""

    def __call__(self, name: str, value: Any) -> float:
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and value >= 0):
            units = f" {self.units}" if self.units else ""
            raise ValueError(f"{name} = {value!r}{units} must be finite and >= 0")
        return float(value)


@dataclass(frozen=True)
class OneOf(Check):
    """One of ``choices``."""

    choices: tuple[Any, ...]

    def __call__(self, name: str, value: Any) -> Any:
        if not any(value == c and type(value) is type(c) for c in self.choices):
            raise ValueError(f"{name} = {value!r}; allowed: {list(self.choices)}")
        return value


@dataclass(frozen=True)
class Interval(Check):
    """A finite number in ``[low, high]``, in ``units`` (shown in the message)."""

    low: float
    high: float
    units: str = ""

    def __call__(self, name: str, value: Any) -> float:
        ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and self.low <= value <= self.high):
            units = f" {self.units}" if self.units else ""
            raise ValueError(f"{name} = {value!r}{units} is outside [{self.low}, {self.high}]")
        return float(value)


@dataclass(frozen=True)
class Times(Check):
    """At least ``count`` finite times (s), in order: each >= 0 (> 0 if ``positive``),
    within the board clock's range (`drivers.protocol.MAX_CLOCK`, about 317 years: no
    board can wait longer) and not below the one before (above it if ``strictly``)."""

    count: int = 1
    positive: bool = False
    strictly: bool = False

    def __call__(self, name: str, value: Any) -> list[float]:
        numbers = isinstance(value, list | tuple | np.ndarray) and all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value
        )
        t = np.asarray(value if numbers else [], np.float64)
        steps = np.diff(t)
        if (
            not numbers
            or t.ndim != 1
            or len(t) < self.count
            or not np.all(np.isfinite(t))
            or np.any(t > MAX_CLOCK)
            or np.any(t <= 0 if self.positive else t < 0)
            or np.any(steps <= 0 if self.strictly else steps < 0)
        ):
            raise ValueError(
                f"{name} = {value!r} must be at least {self.count} finite time(s) (s), "
                f"{'> 0' if self.positive else '>= 0'} and <= {MAX_CLOCK:g}, "
                f"{'increasing' if self.strictly else 'sorted'}"
            )
        return t.tolist()


@dataclass(frozen=True)
class Each(Check):
    """A non-empty list whose every item passes ``check`` (messages name ``name[i]``)."""

    check: Check

    def __call__(self, name: str, value: Any) -> list[Any]:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"{name} = {value!r} must be a non-empty list")
        return [self.check(f"{name}[{i}]", v) for i, v in enumerate(value)]


#: Start-document keys the campaign runner sets on every step's run.
STEP_METADATA = (
    "campaign_id",
    "campaign_file",
    "step_key",
    "step_index",
    "step_count",
    "step_digest",
)
# bluesky's own keys and those replay reads back; "hints", "num_points" and the like stay
# the caller's to set, as bluesky's plans allow (for live plots and progress).
_BLUESKY_METADATA = ("uid", "time", "scan_id", "plan_name", "plan_type", "plan_args")
_LABCIM_METADATA = ("board_identity", "network", "deployment", "programming", "replay_of")
RESERVED_METADATA = frozenset({*STEP_METADATA, *_BLUESKY_METADATA, *_LABCIM_METADATA})
"""Start-document keys that bluesky, labcim's plans, replay and campaigns set: what
replay, calibration and resuming read back, so extra metadata may not replace them."""


def metadata_errors(md: Mapping[str, Any], prefix: str) -> list[str]:
    """What is wrong with extra start metadata ``md`` (a key named ``prefix + key``): a
    reserved key (`RESERVED_METADATA`), a value that JSON cannot store."""
    errors = []
    for key, value in md.items():
        if key in RESERVED_METADATA:
            errors.append(f"{prefix}{key}: reserved; labcim or bluesky sets it")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            errors.append(f"{prefix}{key}: not storable as JSON; got {value!r} (quote it)")
    return errors


@dataclass(frozen=True)
class ExtraMetadata(Check):
    """Extra start metadata of a plan's run (its ``md``): no reserved key, JSON values."""

    def __call__(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} = {value!r} must be a mapping")
        if errors := metadata_errors(value, ""):  # the signature puts the name first
            raise ValueError("; ".join(errors))
        return dict(value)


EXTRA_METADATA = ExtraMetadata()


_TOGETHER = "__labcim_checks_together__"


def checks_together(check: Callable[..., None]) -> Callable[[Callable], Callable]:
    """Give a plan the check of its arguments together that no one argument can make.

    ``check(**arguments)`` gets every argument but the board, converted, with the plan's
    defaults filled in, and raises ValueError naming the arguments (``batch_size = 3
    must divide n_vectors = 10``).  The plan calls it too, so Python callers get the
    same message; `PlanSignature.bind` and campaign files call it before anything is
    connected.
    """

    def declare(plan: Callable) -> Callable:
        setattr(plan, _TOGETHER, check)
        return plan

    return declare


def checks_of(hint: Any) -> tuple[Any, tuple[Check, ...]]:
    """``(type, checks)`` of an annotation: the type without ``Annotated``, its `Check` s."""
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, tuple(e for e in extras if isinstance(e, Check))
    return hint, ()


class PlanSignature:
    """The keyword arguments a plan takes after its first parameter (the board).

    Parameters
    ----------
    name : str
        The plan's registered name, used in messages.
    plan : callable
        The plan function, ``plan(board, **arguments)``.

    Raises
    ------
    TypeError
        If the plan takes no parameter for the board.
    """

    def __init__(self, name: str, plan: Callable[..., object]) -> None:
        self.name, self.plan = name, plan
        parameters = list(inspect.signature(plan).parameters.values())
        if not parameters or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(f"plan {name!r} does not take the board as its first parameter")
        self.board = parameters[0].name
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self.parameters = {p.name: p for p in parameters[1:] if p.kind in keyword}
        self.open = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        try:
            self.hints = typing.get_type_hints(plan, include_extras=True)
        except Exception:  # an annotation naming something not importable: leave unchecked
            self.hints = {}

    def __str__(self) -> str:
        return f"{self.name}({', '.join(self.parameters)}{', **kwargs' if self.open else ''})"

    def unknown(self, names: Iterable[str]) -> list[str]:
        """Messages for the names the plan does not take, each listing those it does."""
        allowed = ", ".join(self.parameters) or "none"
        return [
            f"{name}: unknown argument of {self.name}; allowed: {allowed}"
            if name != self.board
            else f"{name}: the board is given by the chip, not as an argument"
            for name in names
            if name == self.board or not (name in self.parameters or self.open)
        ]

    def missing(self, names: Iterable[str]) -> list[str]:
        """The required arguments not among ``names``."""
        given = set(names)
        return [
            name
            for name, p in self.parameters.items()
            if p.default is inspect.Parameter.empty and name not in given
        ]

    def convert(self, name: str, value: Any, base_dir: Path) -> Any:
        """``value`` converted to the annotation of argument ``name``.

        Raises
        ------
        ValueError
            If it does not fit its type (the message says what was expected, not
            where) or fails one of the plan's `Check` s (their message names it).
        """
        if isinstance(value, Mapping) and "file" in value and set(value) <= _ARRAY_FILE_KEYS:
            value = load_array(value, base_dir)
        hint, checks = checks_of(self.hints.get(name, Any))
        value = _convert(value, hint, base_dir)
        for check in checks if value is not None else ():
            value = check(name, value)
        return value

    def together(self, converted: Mapping[str, Any], where: str = "") -> list[str]:
        """The message of the plan's :func:`checks_together` on ``converted`` arguments
        (defaults filled in), or none."""
        check = getattr(self.plan, _TOGETHER, None)
        if check is None:
            return []
        defaults = {
            name: p.default
            for name, p in self.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        try:
            check(**{**defaults, **converted})
        except ValueError as exc:
            return [f"{where}{exc}"]
        return []

    def bind(self, arguments: Mapping[str, Any], base_dir: Path, where: str = "") -> dict:
        """All of ``arguments`` checked and converted.

        Parameters
        ----------
        arguments : mapping
            Argument name to YAML value.
        base_dir : Path
            Where relative file names are found.
        where : str
            Prefix of the field names in messages, e.g. ``"steps[2].args."``.

        Raises
        ------
        ArgumentError
            Naming every unknown, missing or ill-typed argument, or else the arguments
            that do not fit together (:func:`checks_together`).
        """
        errors = [where + message for message in self.unknown(arguments)]
        field = where.rstrip(". ") or "arguments"
        errors += [
            f"{field}: missing required argument {name!r} of {self.name}"
            for name in self.missing(arguments)
        ]
        converted = {}
        for name, value in arguments.items():
            try:
                converted[name] = self.convert(name, value, base_dir)
            except ValueError as exc:
                errors.append(f"{where}{name}: {exc}")
        errors = errors or self.together(converted, where)
        if errors:
            raise ArgumentError(errors)
        return converted


def resolve_path(base_dir: Path, text: str | PurePath) -> Path:
    """A path written in a file or an argument: ``~`` is the home folder (no shell expands
    it in a YAML file), a relative path is relative to ``base_dir``."""
    return base_dir / Path(text).expanduser()


def load_array(reference: Mapping[str, Any], base_dir: Path) -> np.ndarray:
    """The array named by ``{file: path}`` (``.npy``) or ``{file: path, key: name}`` (``.npz``).

    Raises
    ------
    ValueError
        If the file cannot be read as an array without pickle, or the key is not in it.
    """
    path = resolve_path(base_dir, str(reference["file"]))
    key = reference.get("key")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        reason = str(exc)
        if not _numpy_file(path):  # numpy calls any other file "pickled" and hints at pickle
            reason = "not a .npy or .npz file (the files numpy.save and numpy.savez write)"
        raise ValueError(f"cannot load an array from {path}: {reason}") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise ValueError(f"{path} holds one array: 'key' is for .npz files")
        return loaded
    with loaded:
        names = list(loaded.files)
        if key is None and len(names) == 1:
            key = names[0]
        if key not in names:
            raise ValueError(f"{path} holds {names}: say which with 'key'")
        return loaded[key]


def _numpy_file(path: Path) -> bool:
    """Whether ``path`` is missing or starts as a .npy or .npz (zip) file does."""
    try:
        with open(path, "rb") as file:
            start = file.read(6)
    except OSError:
        return True  # the error of opening it says what is wrong
    return start == b"\x93NUMPY" or start.startswith(b"PK")


def _convert(value: Any, hint: Any, base_dir: Path) -> Any:
    hint, _ = checks_of(hint)  # checks nested in list[...] etc. are the plan's to run
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return value
    if _is_array(hint):
        return None if value is None and type(None) in args else _array(value)
    if hint is None or hint is type(None):
        if value is None:
            return None
    elif origin in (Union, types.UnionType):
        return _union(value, args, hint, base_dir)
    elif origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ValueError(f"must be one of {', '.join(map(repr, args))}; got {value!r}")
    elif hint in _SEQUENCES or origin in _SEQUENCES:
        return _sequence(value, hint, base_dir)
    elif hint in _MAPPINGS or origin in _MAPPINGS:
        if isinstance(value, Mapping):
            key, item = args or (Any, Any)
            return {
                _convert(k, key, base_dir): _convert(v, item, base_dir) for k, v in value.items()
            }
    elif not isinstance(hint, type):  # Callable[...], Protocol generics...: not checkable
        return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "10e-6" (no dot) as a string; a float field takes it as the number.
        with contextlib.suppress(ValueError):
            if isinstance(value, str) and math.isfinite(number := float(value)):
                return number
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif issubclass(hint, PurePath):
        if isinstance(value, str | PurePath):
            return hint(resolve_path(base_dir, value))
    elif isinstance(value, hint):
        return value
    raise ValueError(f"expected {_describe(hint)}; got {value!r}")


def _union(value: Any, args: tuple, hint: Any, base_dir: Path) -> Any:
    if value is None and type(None) in args:
        return None
    for alternative in args:
        if alternative is not type(None):
            try:
                return _convert(value, alternative, base_dir)
            except ValueError:
                continue
    raise ValueError(f"expected {_describe(hint)}; got {value!r}")


def _sequence(value: Any, hint: Any, base_dir: Path) -> list | tuple:
    items = list(value) if isinstance(value, list | tuple) else [value]
    args = typing.get_args(hint)
    origin = typing.get_origin(hint) or hint
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            raise ValueError(f"expected {_describe(hint)}; got {value!r}")
        return tuple(_convert(v, a, base_dir) for v, a in zip(items, args, strict=True))
    item = args[0] if args else Any
    try:
        converted = [_convert(v, item, base_dir) for v in items]
    except ValueError:
        raise ValueError(f"expected {_describe(hint)}; got {value!r}") from None
    return tuple(converted) if origin is tuple else converted


def _is_array(hint: Any) -> bool:
    if hint is np.ndarray or typing.get_origin(hint) is np.ndarray:
        return True
    args = set(typing.get_args(hint))
    return typing.get_origin(hint) in (Union, types.UnionType) and args >= _ARRAY_LIKE


def _array(value: Any) -> np.ndarray:
    expected = "an array (nested lists of numbers, or {file: ...})"
    if isinstance(value, str):
        hint = f" (an array file is given as {{file: {value}}})" if "." in value else ""
        raise ValueError(f"expected {expected}; got the text {value!r}{hint}")
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nesting
        array = np.empty(0, dtype=object)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"expected {expected}; got {value!r}")
    return array


def describe_type(hint: Any) -> str:
    """How help and messages name an annotation: ``list of int or null``, ``float``."""
    if typing.get_origin(hint) is Annotated:
        return describe_type(typing.get_args(hint)[0])
    return _describe(hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if hint is type(None) or hint is None:
        return "null"
    if (hint in _SEQUENCES or origin in _SEQUENCES) and args:
        return f"list of {_describe(args[0])}"
    if (hint in _MAPPINGS or origin in _MAPPINGS) and args:
        return f"mapping of {_describe(args[0])} to {_describe(args[1])}"
    return getattr(hint, "__name__", str(hint))

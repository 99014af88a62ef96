"""YAML with bounds: safe loading that no input can make slow or large.

`yaml.safe_load` constructs nothing dangerous, but aliases make a small file stand for
a huge document: nine anchors of nine aliases each are 9**9 values once anything walks
them (``json.dumps`` of the metadata grew to 12 GB).  Here a composer counts, while it
builds the node graph and before anything is constructed, every node as often as
aliases repeat it, and the nesting depth aliases included; the file's size is bounded
first.  Each bound, when passed, is an error naming it and the line.  The events come
from libyaml when PyYAML has it (a C scanner, and it caps flow nesting itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from os import PathLike
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode
from yaml.resolver import Resolver

try:
    from yaml.cyaml import CParser

    _PARSER: tuple[type, ...] = (CParser,)
except ImportError:  # PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    _PARSER = (Reader, Scanner, Parser)


@dataclass(frozen=True)
class Limits:
    """Bounds on one YAML document.

    Attributes
    ----------
    max_bytes : int
        Size of the text.
    max_depth : int
        Nesting levels of mappings and sequences (the top level is 1).
    max_values : int
        Nodes (scalars, mappings, sequences) of the document with every alias
        expanded: what anything walking the loaded data would visit.
    max_number_chars : int
        Length of a scalar read as an integer or float (YAML 1.1's ``1:30:00`` base-60
        integers cost time growing with the square of their length).
    """

    max_bytes: int = 2**20
    max_depth: int = 32
    max_values: int = 20_000
    max_number_chars: int = 100


class YAMLLimitError(yaml.YAMLError):
    """A document beyond one of the `Limits`; the message names it and the line."""


def load_bounded(text: bytes | str, limits: Limits = Limits()) -> Any:
    """Parse and construct ``text`` like `yaml.safe_load`, within ``limits``.

    Raises
    ------
    YAMLLimitError
        If ``text`` passes a bound; nothing beyond the bound was built.
    yaml.YAMLError
        If ``text`` is not valid YAML.
    """
    check_size(len(text.encode() if isinstance(text, str) else text), limits)
    loader = _BoundedLoader(text, limits)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_bounded(path: str | PathLike[str], limits: Limits = Limits()) -> bytes:
    """The bytes of the file at ``path``, refused before reading if over ``max_bytes``.

    Raises
    ------
    YAMLLimitError
        If the file (or what a pipe gives) is over ``limits.max_bytes``.
    OSError
        If the file cannot be read.
    """
    with open(path, "rb") as file:
        check_size(os.fstat(file.fileno()).st_size, limits)
        text = file.read(limits.max_bytes + 1)  # a pipe or device has no size
    check_size(len(text), limits)
    return text


def one_line(exc: BaseException) -> str:
    """A YAML error as one line: where, then what (PyYAML's text spans several)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}"
    return " ".join(str(exc).split())


def check_size(size: int, limits: Limits = Limits()) -> None:
    """Raise `YAMLLimitError` if a text of ``size`` bytes is over ``limits.max_bytes``."""
    if size > limits.max_bytes:
        raise YAMLLimitError(f"{size} bytes, over the limit of {limits.max_bytes} bytes")


class _BoundedComposer(Composer):
    """PyYAML's composer, counting each node as often as aliases make it appear."""

    def __init__(self, limits: Limits) -> None:
        Composer.__init__(self)
        self._limits = limits
        self._values = 0  # nodes so far, aliases counted as what they stand for
        self._depth = 0  # of the node being composed
        self._deepest = 0  # depth reached within the innermost open anchored node
        self._extent: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (values, levels)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if event.__class__ is AliasEvent:
            node = Composer.compose_node(self, parent, index)  # the anchored node, shared
            extent = self._extent.get(id(node))
            if extent is None:  # the anchored node is still open: the alias is inside it
                raise YAMLLimitError(
                    f"{_where(event)}: alias *{event.anchor} lies inside the node it "
                    "refers to (a recursive structure)"
                )
            self._values += extent[0]
            self._check(event, self._depth + extent[1])
            return node
        depth = self._depth = self._depth + 1
        first = self._values = self._values + 1
        self._check(event, depth)
        anchored = event.anchor is not None
        if anchored:  # measure it: aliases of it count what it holds
            outside, self._deepest = self._deepest, depth
        node = Composer.compose_node(self, parent, index)
        if anchored:
            self._extent[id(node)] = (self._values - first + 1, self._deepest - depth + 1)
            self._deepest = max(outside, self._deepest)
        self._depth = depth - 1
        return node

    def _check(self, event: Any, depth: int) -> None:
        if depth > self._deepest:
            self._deepest = depth
        if depth > self._limits.max_depth:
            raise YAMLLimitError(
                f"{_where(event)}: nested deeper than the limit of {self._limits.max_depth} levels"
            )
        if self._values > self._limits.max_values:
            raise YAMLLimitError(
                f"{_where(event)}: with its aliases expanded the document holds more than "
                f"the limit of {self._limits.max_values} values"
            )


class _BoundedLoader(_BoundedComposer, *_PARSER, SafeConstructor, Resolver):
    def __init__(self, text: bytes | str, limits: Limits) -> None:
        for parser in _PARSER:
            if parser is _PARSER[0]:
                parser.__init__(self, text)
            else:
                parser.__init__(self)
        _BoundedComposer.__init__(self, limits)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key written twice: plain YAML keeps the last one
        silently, so a second ``out:`` added by mistake would win.  (A key given again
        after a ``<<:`` merge overrides the merged one, as YAML says.)"""
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=False)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable: SafeConstructor names it
                    continue
                if first is not key_node:
                    raise ConstructorError(
                        None,
                        None,
                        f"key {key!r} given twice (first on line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return SafeConstructor.construct_mapping(self, node, deep=deep)

    def construct_number(self, node: Any) -> Any:
        """An int or float, if its text is within ``max_number_chars``."""
        if len(node.value) > self._limits.max_number_chars:
            raise YAMLLimitError(
                f"{_where(node)}: a number of {len(node.value)} characters, over the limit "
                f"of {self._limits.max_number_chars}"
            )
        construct = SafeConstructor.yaml_constructors[node.tag]
        return construct(self, node)


for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
    _BoundedLoader.add_constructor(_tag, _BoundedLoader.construct_number)


def _where(event: Any) -> str:
    """``line L, column C`` of an event or node."""
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}"

"""``labcim run PLAN --chip URL --out PATH -p key=value ...``: one plan, one or more runs."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from labcim.cli import suspend


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run one registered plan against a chip and save its runs",
        description="Run one plan registered under the labcim.plans entry points.  Values "
        "are YAML, quoted for the shell: -p 'cores=[0,1]' -p tolerance=0.02 "
        "-p 'weights={file: w.npy}'.  Ctrl-C "
        "pauses and asks whether to resume or abort.  labcim run PLAN --help lists the "
        "plan's arguments.",
        add_help=False,
    )
    parser.add_argument(
        "-h", "--help", action="store_true", help="this help, or with PLAN the plan's arguments"
    )
    parser.add_argument("plan", nargs="?", help="plan name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the registered plans")
    parser.add_argument("--chip", help="chip URL, e.g. sim://pcm-small?cores=4, or 'none'")
    parser.add_argument("--out", help="results location (HDF5 file or directory)")
    parser.add_argument(
        "--smu-model",
        metavar="NAME",
        help="SMU model when --chip is a VISA resource, e.g. 2450, b2900, b1500a (default: "
        "detected from the instrument's *IDN? reply)",
    )
    parser.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a plan argument (repeatable)",
    )
    parser.add_argument(
        "--md",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="start metadata for the runs, e.g. --md operator=ada (repeatable)",
    )
    suspend.add_option(parser)
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Check the arguments and the chip URL, connect, run the plan; return the exit status.

    Nothing is created at ``--out`` unless the plan opens a run: a bad argument, a bad
    URL, a board that cannot be reached or a plan that refuses its arguments before
    opening its run leave no file or folder behind.
    """
    from labcim import suspenders
    from labcim.cli import one_line
    from labcim.cli.pause import pause_handler
    from labcim.connection import check_url
    from labcim.engine import NO_CHIP, PlanAbortedError, connect_chip, run_engine, run_plan
    from labcim.hdf5.output import ForeignFileError, check_output
    from labcim.plan_args import ArgumentError, PlanSignature, metadata_errors
    from labcim.registry import UnknownPlanError, get_plan

    if args.list:
        return _list_plans()
    if args.help:
        if not args.plan:
            args.parser.print_help()
            return 0
        try:
            print(plan_help(args.plan, get_plan(args.plan)))
        except UnknownPlanError as exc:
            print(f"labcim run: {exc}", file=sys.stderr)
            return 2
        return 0
    if not (args.plan and args.chip and args.out):
        args.parser.error("give PLAN, --chip and --out (or --list)")
    options = {}
    if args.smu_model:
        if "::" not in args.chip:
            print(f"labcim run: --smu-model needs a VISA resource as --chip, not {args.chip}",
                  file=sys.stderr)  # fmt: skip
            return 2
        options["driver"] = args.smu_model
    try:
        plan = get_plan(args.plan)
        signature = PlanSignature(args.plan, plan)
        arguments = signature.bind(assignments(args.params, "-p"), Path.cwd(), where="-p ")
        md = assignments(args.md, "--md")
        if errors := metadata_errors(md, "--md "):
            raise ArgumentError(errors)
        watched = suspend.read_option(args.suspend, args.chip)
        if args.chip != NO_CHIP:
            check_url(args.chip)
        check_output(args.out)  # may labcim write there? asked before connecting
    except (UnknownPlanError, TypeError, ArgumentError, ForeignFileError) as exc:
        print(f"labcim run: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        where = "" if str(exc).startswith("--suspend") else "--chip "
        print(f"labcim run: {where}{exc}", file=sys.stderr)
        return 2
    try:
        board = connect_chip(args.chip, **options)
    except Exception as exc:
        print(f"labcim run: cannot connect to {args.chip}: {one_line(exc)}", file=sys.stderr)
        return 1
    try:
        with _removed_unless_used(args.out):
            RE = run_engine(args.out, progress=not args.quiet)
            suspenders.install(RE, board, watched)
            uids = run_plan(RE, plan(board, **arguments), md, pause_handler())
    except PlanAbortedError as exc:
        print(f"labcim run: {exc}", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"labcim run: {args.plan}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if board is not None:
            board.close()
    print(f"{args.plan}: {len(uids)} run(s) saved to {args.out}: {' '.join(uids)}")
    return 0


@contextlib.contextmanager
def _removed_unless_used(out: str | Path) -> Iterator[None]:
    """Remove the folders the block creates for results at ``out`` if no run was opened
    in them (a plan that refused its arguments); nothing that was there is touched."""
    from labcim.hdf5.layout import Location

    run_dir = Location.from_path(out).run_dir.absolute()
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    try:
        yield
    finally:
        for folder in created:  # innermost first
            with contextlib.suppress(OSError):  # not empty: a run was written there
                folder.rmdir()


def assignments(items: Sequence[str], option: str) -> dict[str, Any]:
    """``["key=value", ...]`` as a dict, each value read as YAML (safe, bounded loading:
    the limits of campaign files, `labcim.bounded_yaml`).

    Raises
    ------
    ArgumentError
        Naming each item that is not ``KEY=VALUE`` or whose value is not YAML.
    """
    import yaml

    from labcim.bounded_yaml import YAMLLimitError, load_bounded
    from labcim.plan_args import ArgumentError

    values, errors = {}, []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            errors.append(f"{option} {item}: expected KEY=VALUE")
            continue
        try:
            values[key] = load_bounded(text)
        except YAMLLimitError as exc:
            errors.append(f"{option} {key}: the value is too large: {exc}")
        except yaml.YAMLError as exc:
            errors.append(f"{option} {key}: the value is not valid YAML: {exc}")
    if errors:
        raise ArgumentError(errors)
    return values


def _list_plans() -> int:
    from labcim.registry import available_plans

    plans = available_plans()
    width = max(map(len, plans), default=0)
    for name, entry in plans.items():
        try:
            summary = (entry.load().__doc__ or "").strip().partition("\n")[0].replace("``", "")
        except Exception as exc:  # one broken package must not hide the others
            summary = f"cannot load {entry.value}: {exc!r}"
        print(f"{name:<{width}}  {summary}")
    print(f"\n{len(plans)} plan(s); labcim run PLAN --help lists a plan's arguments")
    return 0


def plan_help(name: str, plan: Callable[..., object]) -> str:
    """The help of one plan: usage, its docstring's summary, and per argument its type,
    default and the first sentence of its numpydoc description (units included)."""
    from labcim.plan_args import PlanSignature, describe_type

    signature = PlanSignature(name, plan)
    doc = inspect.getdoc(plan) or ""
    described = parameter_docs(doc)
    rows = []
    for arg, parameter in signature.parameters.items():
        hint = signature.hints.get(arg, parameter.annotation)
        kind = describe_type(hint) if hint is not inspect.Parameter.empty else "any"
        default = (
            "required"
            if parameter.default is inspect.Parameter.empty
            else f"default {parameter.default!r}"
        )
        rows.append((arg, f"{kind}, {default}", _first_sentence(described.get(arg, ""))))
    summary = doc.partition("\n\n")[0].replace("\n", " ")
    lines = [
        f"usage: labcim run {name} --chip URL --out FILE [-p NAME=VALUE ...]",
        "",
        summary,
        "",
        f"arguments of {name} (-p NAME=VALUE; values are YAML, arrays as {{file: w.npy}}):",
    ]
    for arg, kind, description in rows:
        lines.append(f"  {arg} : {kind}")
        lines += textwrap.wrap(description, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines).replace("``", "")


def parameter_docs(doc: str) -> dict[str, str]:
    """The descriptions of the numpydoc ``Parameters`` section of ``doc``, by name
    (``a, b : int`` entries give the same text to each)."""
    lines = doc.splitlines()
    try:
        start = (
            next(
                i
                for i, line in enumerate(lines[:-1])
                if line.strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}
            )
            + 2
        )
    except StopIteration:
        return {}
    docs: dict[str, str] = {}
    names: list[str] = []
    for i in range(start, len(lines)):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            break  # the next section
        if line and not line[0].isspace():
            names = [n.strip() for n in line.partition(" : ")[0].split(",")]
            for n in names:
                docs[n] = ""
        elif line.strip():
            for n in names:
                docs[n] = f"{docs[n]} {line.strip()}".strip()
    return docs


def _first_sentence(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # Sphinx roles: the name alone
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]

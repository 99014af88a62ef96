"""``labcim run PLAN --chip URL --out PATH -p key=value ...``: one plan, one or more runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run one registered plan against a chip and save its runs",
        description="Run one plan registered under the labcim.plans entry points.  Values "
        "are YAML: -p cores=[0,1] -p tolerance=0.02 -p weights={file: w.npy}.  Ctrl-C "
        "pauses and asks whether to resume or abort.",
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
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Check the arguments, connect, run the plan; return the exit status."""
    from labcim.cli.pause import pause_handler
    from labcim.engine import PlanAbortedError, connect_chip, connected, run_engine, run_plan
    from labcim.plan_args import ArgumentError, PlanSignature
    from labcim.registry import UnknownPlanError, get_plan

    if args.list:
        return _list_plans()
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
    except (UnknownPlanError, TypeError, ArgumentError) as exc:
        print(f"labcim run: {exc}", file=sys.stderr)
        return 2
    RE = run_engine(args.out, progress=not args.quiet)
    try:
        with connected(connect_chip, args.chip, **options) as board:
            uids = run_plan(RE, plan(board, **arguments), md, pause_handler())
    except PlanAbortedError as exc:
        print(f"labcim run: {exc}", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"labcim run: {args.plan} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.plan}: {len(uids)} run(s) saved to {args.out}: {' '.join(uids)}")
    return 0


def assignments(items: Sequence[str], option: str) -> dict[str, Any]:
    """``["key=value", ...]`` as a dict, each value read as YAML (safe loading).

    Raises
    ------
    ArgumentError
        Naming each item that is not ``KEY=VALUE`` or whose value is not YAML.
    """
    import yaml

    from labcim.plan_args import ArgumentError

    values, errors = {}, []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            errors.append(f"{option} {item}: expected KEY=VALUE")
            continue
        try:
            values[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            errors.append(f"{option} {key}: the value is not valid YAML: {exc}")
    if errors:
        raise ArgumentError(errors)
    return values


def _list_plans() -> int:
    from labcim.plan_args import PlanSignature
    from labcim.registry import available_plans

    for name, entry in available_plans().items():
        try:
            plan = entry.load()
            summary = (plan.__doc__ or "").strip().partition("\n")[0]
            print(f"{PlanSignature(name, plan)}\n    {summary}")
        except Exception as exc:  # one broken package must not hide the others
            print(f"{name}: cannot load {entry.value}: {exc!r}")
    return 0

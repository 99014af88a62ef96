"""``labcim run PLAN --chip URL --out PATH -p key=value ...``: one plan, one or more runs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
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
    """Check the arguments and the chip URL, connect, run the plan; return the exit status.

    Nothing is created at ``--out`` unless the plan opens a run: a bad argument, a bad
    URL, a board that cannot be reached or a plan that refuses its arguments before
    opening its run leave no file or folder behind.
    """
    from labcim.cli import one_line
    from labcim.cli.pause import pause_handler
    from labcim.connection import check_url
    from labcim.engine import NO_CHIP, PlanAbortedError, connect_chip, run_engine, run_plan
    from labcim.plan_args import ArgumentError, PlanSignature
    from labcim.registry import UnknownPlanError, get_plan

    if args.list:
        return _list_plans()
    if not (args.plan and args.chip and args.out):
        args.parser.error("give PLAN, --chip and --out (or --list)")
    try:
        plan = get_plan(args.plan)
        signature = PlanSignature(args.plan, plan)
        arguments = signature.bind(assignments(args.params, "-p"), Path.cwd(), where="-p ")
        md = assignments(args.md, "--md")
        if args.chip != NO_CHIP:
            check_url(args.chip)
    except (UnknownPlanError, TypeError, ArgumentError) as exc:
        print(f"labcim run: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"labcim run: --chip {exc}", file=sys.stderr)
        return 2
    try:
        board = connect_chip(args.chip)
    except Exception as exc:
        print(f"labcim run: cannot connect to {args.chip}: {one_line(exc)}", file=sys.stderr)
        return 1
    try:
        with _removed_unless_used(args.out):
            RE = run_engine(args.out, progress=not args.quiet)
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

"""``labcim show FILE``: one line per run of a results file or directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``show`` subcommand."""
    parser = subparsers.add_parser(
        "show",
        help="summarize the runs in a results file",
        description="Print one line per run: number, start time, plan, exit status, "
        "events per stream and the summary's key figures.",
    )
    parser.add_argument("path", help="results file or directory given to HDF5Writer, or a run file")
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also write each run's figures (conductance maps, errors, MVM, drift) as PNG",
    )
    parser.add_argument(
        "--out", default=None, help="folder for --plot (default: PATH's folder / plots)"
    )
    parser.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from labcim.hdf5.reader import describe, open_runs

    runs = open_runs(args.path)
    for run in runs:
        print(describe(run))
    if not runs:
        print(f"no runs in {args.path}")
    if args.plot:
        from labcim.plots import save_run_plots

        out = Path(args.out) if args.out else Path(args.path).resolve().parent / "plots"
        for run in runs:
            for path in save_run_plots(run, out, prefix=f"run{run.number:06d}_"):
                print(f"wrote {path}")
    return 0

"""``labcim show FILE``: the runs of a results file or directory and their key figures.

A table per run (key figures with units, grouped per core; `labcim.key_figures`),
``--json`` for programs, ``--plot`` for the figures as PNG, ``--csv`` for the scalar
streams and key figures as tables, ``--follow`` to watch runs another process is
writing until they end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``show`` subcommand."""
    parser = subparsers.add_parser(
        "show",
        help="the runs in a results file and their key figures",
        description="Print each run (number, plan, exit status, start time, events per "
        "stream) and its key figures with units, grouped per core.  A damaged run file "
        "(truncated, not HDF5, unreadable metadata) is named on stderr with the reason and "
        "the other runs are still shown.  Exit status: 0 every run shown, 1 some run file "
        "damaged, 2 nothing at PATH or a file labcim did not write where --csv or --plot "
        "would write (it is left as it is; figures and tables labcim wrote are replaced).",
    )
    parser.add_argument("path", help="results file or directory given to HDF5Writer, or a run file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also write each run's figures (conductance maps, errors, MVM, drift, I-V) as PNG",
    )
    parser.add_argument(
        "--out", default=None, help="folder for --plot (default: PATH's folder / plots)"
    )
    parser.add_argument(
        "--csv",
        metavar="DIR",
        help="write key_figures.csv and each stream's scalar columns (runNNNNNN_STREAM.csv)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="watch a run or campaign another process is writing: progress and latest "
        "figures, until it ends",
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between --follow refreshes"
    )
    parser.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from labcim.hdf5.opening import DamagedFileError
    from labcim.hdf5.output import ForeignFileError
    from labcim.hdf5.reader import DamagedRunWarning, open_runs

    if args.follow:
        return follow(args.path, args.interval)
    try:
        runs = open_runs(args.path)  # warns, one line each, about damaged run files
    except (FileNotFoundError, DamagedFileError) as exc:
        print(f"labcim show: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DamagedFileError) else 2
    damaged = len(runs.damaged)
    shown = []
    for run in runs:
        try:
            shown.append((run, run_record(run) if args.json else run_table(run)))
        except DamagedFileError as exc:  # e.g. its summary stream cannot be read
            warnings.warn(f"skipped damaged run file {exc}", DamagedRunWarning, stacklevel=1)
            damaged += 1
    if args.json:
        print(json.dumps([record for _, record in shown], indent=1))
    else:
        print(f"{args.path}: {len(shown)} run(s)" + (f", {damaged} damaged" if damaged else ""))
        for _, table in shown:
            print(table)
    good = [run for run, _ in shown]
    try:
        _write_files(args, good)
    except ForeignFileError as exc:
        print(f"labcim show: {exc}", file=sys.stderr)
        return 2
    return 1 if damaged else 0


def _write_files(args: argparse.Namespace, runs: list[Any]) -> None:
    """``--csv`` and ``--plot``."""
    if args.csv:
        from labcim.export import write_csv

        paths = write_csv(runs, args.csv)
        print(f"wrote {len(paths)} CSV file(s) to {args.csv}", file=sys.stderr)
    if args.plot:
        from labcim.plots import save_run_plots

        out = Path(args.out) if args.out else Path(args.path).resolve().parent / "plots"
        for run in runs:
            for path in save_run_plots(run, out, prefix=f"run{run.number:06d}_"):
                print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)


#: Interruptions listed under a run's header; --json lists every one.
SHOWN_INTERRUPTIONS = 10


def run_header(run: Any) -> str:
    """``run 3  retention  success  2026-12-01 09:13:05  events: primary 5, summary 1``."""
    from labcim.hdf5.layout import INTERRUPTIONS_STREAM
    from labcim.hdf5.reader import started

    when = started(run)
    counts = run.num_events.items()  # no interruptions is said by not naming them
    events = ", ".join(f"{n} {c}" for n, c in counts if c or n != INTERRUPTIONS_STREAM)
    events = events or "none"
    step = ""
    if "step_key" in run.start:
        step = f"  step {run.start.get('step_index')}/{run.start.get('step_count')}"
    line = f"run {run.number}  {run.plan_name or '?'}  {run.exit_status}  {when}{step}"
    line += f"  events: {events}"
    if run.reason:
        line += f"\n  reason: {' '.join(run.reason.split())}"
    said = run.interruptions
    for when, what in said[:SHOWN_INTERRUPTIONS]:  # s after the start, as a log says
        line += f"\n  {when - run.time:+.1f} s  {' '.join(what.split())}"
    if len(said) > SHOWN_INTERRUPTIONS:  # a flapping link: the rest in --json
        line += f"\n  ... {len(said) - SHOWN_INTERRUPTIONS} more interruptions (--json lists all)"
    return line


def run_table(run: Any) -> str:
    """The run's header and its key figures, grouped, aligned, with units."""
    from labcim.key_figures import key_figures

    figures = key_figures(run)
    lines = [run_header(run)]
    width = max((len(f.name) for f in figures), default=0)
    group = None
    for figure in figures:
        if figure.group != group:
            group = figure.group
            lines.append(f"  {group}")
        value = format_value(figure.value)
        lines.append(
            f"    {figure.name:<{width}}  {value}{' ' + figure.unit if figure.unit else ''}"
        )
    return "\n".join(lines)


def format_value(value: Any) -> str:
    """4 significant digits for floats, yes/no for booleans, the rest as is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_record(run: Any) -> dict[str, Any]:
    """What ``--json`` prints for one run."""
    from labcim.key_figures import key_figures

    return {
        "number": run.number,
        "uid": run.uid,
        "plan_name": run.plan_name,
        "exit_status": run.exit_status,
        "reason": run.reason,
        "time": run.time,
        "file": str(run.path),
        "events": run.num_events,
        "interruptions": [{"time": when, "what": what} for when, what in run.interruptions],
        "campaign": {k: run.start[k] for k in ("campaign_id", "step_key") if k in run.start},
        "key_figures": [f.as_dict() for f in key_figures(run)],
    }


# -- --follow --------------------------------------------------------------------------


def follow(path: str, interval: float, idle: float = 10.0) -> int:
    """Print progress lines of the newest run at ``path`` while another process writes
    it, then its key figures when it ends.

    The watch ends when the newest run has ended and, if it is a campaign step, it was
    the campaign's last step or no further run started within ``idle`` s (a campaign
    that stopped on a failure).  A location not there yet is waited for; a path that
    holds something no labcim writer would put runs in (a text file, another program's
    HDF5 file) is refused at once (exit status 2): no run would ever appear there.
    """
    from labcim.hdf5.output import ForeignFileError, check_output
    from labcim.hdf5.reader import open_runs

    last_line, ended_at, announced = "", None, False
    while True:
        try:
            runs = open_runs(path)
        except (FileNotFoundError, OSError, KeyError):
            runs = []
        if not runs:
            try:
                check_output(path)
            except ForeignFileError as exc:
                why = f"{exc.path}: {exc.reason}, so no labcim runs can appear there"
                print(f"labcim show: {why}", file=sys.stderr)
                return 2
            if not announced:
                print(f"waiting for runs at {path}", flush=True)
                announced = True
            time.sleep(interval)
            continue
        run = runs[-1]
        line = progress_line(run)
        if line != last_line:
            print(line, flush=True)
            if run.exit_status != "incomplete":
                print(run_table(run), flush=True)
            last_line = line
        if run.exit_status == "incomplete":
            ended_at = None
        else:
            ended_at = ended_at or time.monotonic()
            total = run.start.get("step_count")
            last_step = total is None or run.start.get("step_index") == total
            if last_step or time.monotonic() - ended_at > idle:
                return 0
        time.sleep(interval)


def progress_line(run: Any) -> str:
    """``run 2 mvm_characterization (step 2/4): 3/8 events  board_core0_... = 12``."""
    from labcim.plan_data import PRIMARY

    step = ""
    if "step_key" in run.start:
        step = f" (step {run.start.get('step_index')}/{run.start.get('step_count')})"
    primary = run.streams.get(PRIMARY)  # num_points counts its events
    done = len(primary) if primary is not None else 0
    total = run.start.get("num_points")
    line = f"run {run.number} {run.plan_name}{step}: {done}/{total or '?'} events"
    if run.exit_status != "incomplete":
        return f"{line}, {run.exit_status}"
    return line + "".join(f"  {k} = {format_value(v)}" for k, v in latest(primary).items())


def latest(stream: Any) -> dict[str, Any]:
    """The hinted scalar fields of the last event of ``stream`` (what live tables show)."""
    if stream is None or not len(stream):
        return {}
    hinted = [
        field
        for descriptor in stream.descriptors
        for hint in (descriptor.get("hints") or {}).values()
        for field in hint.get("fields", [])
    ]
    values = {}
    for key in dict.fromkeys(hinted):
        if key in stream and len(stream.lazy(key).shape) == 1:
            value = stream.lazy(key)[-1]
            values[key] = value.item() if hasattr(value, "item") else value
    return values

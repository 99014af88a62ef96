"""``labcim replay FILE [--run ID ...] [--chip URL]``: run recorded runs again and compare."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="run recorded runs again (default on the simulated chip) and compare",
        description="Rebuild each recorded plan call from the run alone, run it on the "
        "simulated chip rebuilt from the run (or on --chip), write the new run next to "
        "the recorded one (start metadata 'replay_of') and print the differences per "
        "summary figure and per data key.  A run recorded on a sim:// chip replays "
        "exactly.  Ctrl-C pauses and asks to resume or abort.  Exit status 0 if every "
        "replay ran, 1 if one failed, 130 if one was aborted, 2 if a run "
        "cannot be replayed or --out holds a file labcim did not write (nothing is run then).",
    )
    parser.add_argument("file", help="results file, directory or run file")
    parser.add_argument(
        "--run",
        dest="ids",
        action="append",
        metavar="ID",
        help="run number or uid prefix (repeatable); default every run that is not a replay, "
        "in order",
    )
    parser.add_argument(
        "--chip", help="chip URL to replay on, e.g. 'sim://pcm-hermes?cores=2&model=m.yaml'"
    )
    parser.add_argument("--out", help="where the new runs go (default: next to the recorded)")
    parser.add_argument(
        "--keys",
        action="append",
        metavar="TEXT",
        help="only print figures and data keys containing TEXT (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replay, print one comparison per run; return the exit status."""
    from labcim.cli.pause import pause_handler
    from labcim.compare import format_comparison
    from labcim.engine import PlanAbortedError
    from labcim.hdf5.output import ForeignFileError
    from labcim.recorded import RecordedRunError
    from labcim.replay import replay

    try:
        done = replay(
            args.file,
            args.ids,
            args.chip,
            args.out,
            progress=not args.quiet,
            on_pause=pause_handler(),
        )
    except (PlanAbortedError, KeyboardInterrupt) as exc:  # Ctrl-C: earlier replays stay
        print(f"labcim replay: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except RecordedRunError as exc:
        print(f"labcim replay: {exc}", file=sys.stderr)
        return 2
    except ForeignFileError as exc:  # refused before anything ran
        print(f"labcim replay: --out: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"labcim replay: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for item in done:
        note = "exact" if item.exact else "not exact"
        print(f"on {item.chip} ({note})")
        print(format_comparison(item.comparison, args.keys))
    return 0

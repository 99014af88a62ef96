"""``labcim campaign FILE [--resume] [--dry-run]``: run a campaign file, resumably."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labcim.campaign import Campaign, CampaignResult


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``campaign`` subcommand."""
    parser = subparsers.add_parser(
        "campaign",
        help="run the steps of a campaign file, each as its own run, resumably",
        description="Validate a campaign file (docs/campaigns.md), then run every step as "
        "its own bluesky run saved to HDF5.  Ctrl-C pauses the running step and asks "
        "whether to resume or abort (without a terminal it aborts).  Exit status: 0 all "
        "steps done, 1 a step failed or the campaign stopped, 2 invalid file, 130 aborted.",
    )
    parser.add_argument("file", help="campaign file (YAML)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a campaign with runs at its out location: skip the steps that "
        "finished successfully, redo the rest",
    )
    parser.add_argument(
        "--stations",
        metavar="NAME,...",
        help="dispatch the steps over these stations' queues (labcim station; overrides "
        "the file's stations: section); each step runs on a free station",
    )
    parser.add_argument(
        "--lost-after",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with stations: a station silent this long is dropped and its step "
        "re-queued on another (default: %(default)s)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate (every step's arguments, the chip URL without connecting) and list "
        "the expanded steps (with --resume: which are done) only",
    )
    parser.set_defaults(func=campaign)


def campaign(args: argparse.Namespace) -> int:
    """Validate, then list or run; return the exit status."""
    from labcim.campaign import CampaignError, finished_steps, load_campaign, run_campaign
    from labcim.campaign.schema import DISPATCHED_SUSPEND
    from labcim.cli.pause import pause_handler

    try:
        loaded = load_campaign(args.file)
        _check_chip(loaded)
        if args.dry_run:
            _list_steps(loaded, finished_steps(loaded) if args.resume else {})
            return 0
        spec = args.stations or loaded.stations
        if spec and loaded.suspend:  # the file's own stations: are refused when it loads
            raise CampaignError(loaded.path, [DISPATCHED_SUSPEND])
        if spec:
            result = _dispatch(loaded, spec, args)
        else:
            result = run_campaign(
                loaded, resume=args.resume, progress=not args.quiet, on_pause=pause_handler()
            )
    except CampaignError as exc:
        print(exc, file=sys.stderr)
        return 2
    counts = {s: sum(o.status == s for o in result.outcomes) for s in ("success", "fail", "done")}
    print(
        f"campaign {loaded.id}: {counts['success']} succeeded, {counts['fail']} failed, "
        f"{counts['done']} done before, of {len(loaded.steps)} steps; results in "
        f"{'the stations results directories' if spec else loaded.out}"
    )
    if result.stopped:
        then = "continue" if result.aborted else "fix and continue"
        print(f"stopped: {result.stopped}; {then} with --resume", file=sys.stderr)
    if result.aborted:
        return 130
    return 0 if result.complete else 1


def _check_chip(campaign: Campaign) -> None:
    """The chip URL checked without connecting (scheme, preset, options, model file).

    Raises
    ------
    CampaignError
        Naming the ``chip`` field.
    """
    from labcim.campaign import CampaignError
    from labcim.connection import check_url
    from labcim.engine import NO_CHIP

    if campaign.chip == NO_CHIP:
        return
    try:
        check_url(campaign.chip)
    except ValueError as exc:
        raise CampaignError(campaign.path, [f"chip: {exc}"]) from None


def _dispatch(loaded: Campaign, spec: object, args: argparse.Namespace) -> CampaignResult:
    """The campaign dispatched over the stations of ``spec`` (`labcim.campaign.dispatch`)."""
    from labcim.campaign import CampaignError

    try:
        from labcim.campaign.dispatch import dispatch_campaign
        from labcim.stations.registry import StationError, resolve
    except ImportError as exc:
        message = f"stations: {exc.name} is missing: pip install 'labcim[stations]'"
        raise CampaignError(loaded.path, [message]) from None
    try:
        stations = resolve(spec, "--stations" if args.stations else "stations")
    except StationError as exc:
        raise CampaignError(loaded.path, str(exc).splitlines()) from None
    return dispatch_campaign(
        loaded, stations, resume=args.resume, progress=not args.quiet, lost_after=args.lost_after
    )


def _list_steps(campaign: Campaign, finished: dict[str, str]) -> None:
    print(
        f"campaign {campaign.id}: {len(campaign.steps)} steps, chip {campaign.chip}, "
        f"out {campaign.out}, on_failure {campaign.on_failure}"
    )
    for name, options in campaign.suspend.items():
        given = ", ".join(f"{k}={v:g}" for k, v in options.items())
        print(f"  suspend: board.fpga.{name} {given}")
    for step in campaign.steps:
        status = "done " if step.key in finished else "todo " if finished else ""
        print(f"  {status}{step.describe()}")

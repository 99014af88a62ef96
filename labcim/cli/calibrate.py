"""``labcim calibrate FILE... -o MODEL.yaml``: fit the simulated device model to runs."""

from __future__ import annotations

import argparse
import re
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``calibrate`` subcommand."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the simulated device model to recorded runs (a model file for sim://)",
        description="Fit the simulator's device model to recorded tdp_program (or any "
        "TDP programming), retention, conductance_map (reads >= 2) and "
        "mvm_characterization runs and write a model file; use it as "
        "sim://PRESET?model=MODEL.yaml.  Every run is used for what it gives; the runs "
        "that give nothing are listed with the reason.  See docs/replay.md.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="results files or directories")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit, write the model file, print the fitted knobs; return the exit status."""
    from labcim.hdf5.output import ForeignFileError
    from labcim.recorded import RecordedRunError, open_recorded
    from labcim.twin.calibrate import CalibrationError, calibrate
    from labcim.twin.model_file import save_model

    try:
        runs = [run for path in args.files for run in open_recorded(path)]
        model = calibrate(runs, args.files)
    except (RecordedRunError, CalibrationError) as exc:
        print(f"labcim calibrate: {exc}", file=sys.stderr)
        return 2
    try:
        save_model(model, args.output)
    except (ForeignFileError, FileNotFoundError) as exc:
        print(f"labcim calibrate: -o: {exc.strerror}", file=sys.stderr)
        return 2
    used = model.provenance["runs"]
    print(f"{args.output}: {model.preset} model from {len(used)} of {len(runs)} run(s)")
    estimates = model.provenance["estimates"]
    for section in (model.model_params, model.periphery):
        for key, value in section.items():
            origin = ", ".join(_short(e["from"]) for e in estimates[key])
            print(f"  {key} = {value:.4g}  (from {origin})")
    for skipped in model.provenance["skipped"]:
        print(f"  skipped {skipped['from']}: {skipped['reason']}")
    for warning in model.provenance["warnings"]:
        print(f"labcim calibrate: warning: {warning}", file=sys.stderr)
    return 0


def _short(source: str) -> str:
    """``run 3 core2`` for ``run 3 (retention, 6b1e8681) core2``."""
    return re.sub(r" \([^)]*\)", "", source)

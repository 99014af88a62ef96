"""The ``--suspend MAPPING`` option of ``labcim run`` and ``labcim station``."""

from __future__ import annotations

import argparse

HELP = (
    "suspend the plan while the board's link is degraded, probing the link until it is "
    "clean: YAML as a campaign file's suspend: section, e.g. "
    "'{retry_fraction: {above: 0.2, resume_below: 0.05}}' (docs/campaigns.md)"
)


def add_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--suspend MAPPING`` to ``parser``."""
    parser.add_argument("--suspend", metavar="MAPPING", help=HELP)


def read_option(text: str | None, chip: str) -> dict[str, dict[str, float]]:
    """The ``--suspend`` mapping read (safe, bounded YAML) and checked, for board ``chip``.

    Raises
    ------
    ValueError
        Every mistake on one line, naming ``--suspend`` and the field.
    """
    if text is None:
        return {}
    import yaml

    from labcim.bounded_yaml import YAMLLimitError, load_bounded, one_line
    from labcim.plan_args import ArgumentError
    from labcim.suspenders import check_board, suspend_section

    check_board(chip, "--suspend")
    try:
        section = load_bounded(text)
    except (yaml.YAMLError, YAMLLimitError, ValueError) as exc:
        raise ValueError(f"--suspend: not valid YAML: {one_line(exc)}") from None
    try:
        return suspend_section(section, "--suspend")
    except ArgumentError as exc:
        raise ValueError("; ".join(exc.errors)) from None

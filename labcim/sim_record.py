"""What a run records about a simulated chip, so that a replay can rebuild it exactly.

A ``sim://`` chip is fully determined by its `~mock_hw.chip.ChipSpec` (preset, geometry,
seed, model parameters, periphery) and the operations it has seen.  Every plan records
`chip_record` in its start document (``board_identity.sim_chip``, through
``plans.stubs.identity``): the spec, the chip clock, a fingerprint of its random
generator and the core configurations that differ from the defaults.  A chip whose clock
is 0 has seen no operation (every operation advances it), so a fresh chip from the spec
is the very chip the run started on; a chip that had seen operations (an earlier step of
a campaign) is matched by clock and fingerprint (`matches`), e.g. by replaying the
earlier runs on it first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from mock_hw.chip import Chip, ChipSpec
from mock_hw.core import CoreConfig


def fingerprint(chip: Chip) -> str:
    """Short hash of the chip's random-generator state (equal states, equal hashes)."""
    state = json.dumps(chip.rng.bit_generator.state, sort_keys=True)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def chip_record(board: Any) -> dict[str, Any] | None:
    """The record of the simulated chip behind ``board``, or None for real hardware.

    Returns
    -------
    dict or None
        ``spec`` (the ChipSpec as a dict), ``clock`` (s, the chip clock now),
        ``rng`` (`fingerprint`), ``configs`` (``{core index as str: CoreConfig dict}`` of
        the cores not at the default configuration).
    """
    chip = getattr(board, "sim_chip", None)
    if chip is None:
        return None
    default = CoreConfig()
    return {
        "spec": dataclasses.asdict(chip.spec),
        "clock": chip.time,
        "rng": fingerprint(chip),
        "configs": {
            str(i): xbar.config.to_dict()
            for i, xbar in enumerate(chip.cores)
            if xbar.config != default
        },
    }


def fresh_chip(record: dict[str, Any]) -> Chip:
    """A new chip built from ``record``'s spec, its recorded core configurations applied.

    It is the chip the run started on when ``record["clock"] == 0``.
    """
    chip = Chip(ChipSpec(**record["spec"]))
    configure(chip, record)
    return chip


def configure(chip: Chip, record: dict[str, Any]) -> None:
    """Give ``chip``'s cores the configuration ``record`` lists (others: defaults)."""
    chip.reset_config()
    for core, config in record.get("configs", {}).items():
        chip.configure(int(core), **config)


def matches(chip: Chip, record: dict[str, Any]) -> bool:
    """Whether ``chip`` is in the state ``record`` was taken in: same spec, clock, generator."""
    return (
        dataclasses.asdict(chip.spec) == record["spec"]
        and chip.time == record["clock"]
        and fingerprint(chip) == record["rng"]
    )

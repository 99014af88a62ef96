"""The simulated chip a recorded run is replayed on.

A simulated board reports in its IDENTIFY reply what rebuilds its chip as it is now
(``mock_hw.chip.Chip.record``: spec, clock, random-generator fingerprint, core
configurations), and every plan records it as ``board_identity.sim_chip``.  So the
record is the same whether the chip was simulated in the plan's process (``sim://``),
behind a socket or a pty.  A chip whose clock is 0 has seen no operation (every
operation advances it), so a fresh chip from the spec is the very chip the run started
on; a chip that had seen operations (an earlier step of a campaign) is matched by clock
and fingerprint (`matches`), e.g. by replaying the earlier runs on it first
(`SimChips`).  A run recorded on real hardware gets its technology's preset with its
geometry (`chip_like`).  `replay_board` makes replay's choice of the board.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from labcim.connection import connect
from labcim.devices.board import ChipTestBoard
from labcim.recorded import PlanCall, RecordedRunError
from labcim.twin.sim_url import connect_chip
from mock_hw.chip import Chip, ChipSpec

DEFAULT_PRESET = {"pcm": "pcm-hermes", "rram": "rram-hfox"}
"""Preset of the simulated chip a run recorded on real hardware is replayed on."""


def matches(state: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether a chip reporting ``state`` is in the state ``record`` was taken in: the
    same spec, clock and generator fingerprint (two ``Chip.record`` dicts)."""
    return all(state.get(k) == record.get(k) for k in ("spec", "clock", "rng"))


def fresh_chip(record: Mapping[str, Any]) -> Chip:
    """A new chip built from ``record``'s spec, its recorded core configurations applied.

    It is the chip the run started on when ``record["clock"] == 0``.
    """
    chip = Chip(ChipSpec(**record["spec"]))
    configure(chip, record)
    return chip


def configure(chip: Chip, record: Mapping[str, Any]) -> None:
    """Give ``chip``'s cores the configuration ``record`` lists (others: defaults)."""
    chip.reset_config()
    for core, config in record.get("configs", {}).items():
        chip.configure(int(core), **config)


class SimChips:
    """The simulated chips of a replay session, rebuilt from the runs' records.

    A run recorded on a fresh chip (clock 0) gets a fresh chip from its spec: the exact
    chip it ran on.  A run recorded on a chip that had seen earlier operations continues
    on the chip of an earlier replay when that one is in the recorded state (`matches`),
    so replaying all the runs of a campaign in order reproduces each of them.
    Otherwise the fresh chip's clock is moved to the recorded one, and the replay is only
    statistically the same.
    """

    def __init__(self) -> None:
        self.chips: list[Chip] = []

    def chip_for(self, record: Mapping[str, Any]) -> tuple[Chip, bool]:
        """The chip to replay a run with sim record ``record`` on, and whether it is exact."""
        for chip in self.chips:
            if matches(chip.record(), record):
                configure(chip, record)
                return chip, True
        chip = fresh_chip(record)
        self.chips.append(chip)
        exact = matches(chip.record(), record)
        if not exact:
            chip.advance(record["clock"])
        return chip, exact


def chip_like(identity: Mapping[str, Any]) -> Chip:
    """A simulated chip like the recorded real one: its technology's preset, its geometry.

    Parameters
    ----------
    identity : mapping
        A run's ``board_identity``.

    Raises
    ------
    ValueError
        If the identity names a device type with no preset.
    """
    device_type = identity.get("device_type")
    if device_type not in DEFAULT_PRESET:
        raise ValueError(
            f"board identity device_type = {device_type!r}: no simulated chip for it "
            f"(known: {sorted(DEFAULT_PRESET)}); give --chip"
        )
    return Chip.from_preset(
        DEFAULT_PRESET[device_type],
        cores=identity["n_cores"],
        rows=identity["rows"],
        cols=identity["cols"],
        devices_per_polarity=identity["devices_per_polarity"],
    )


def replay_board(
    call: PlanCall, url: str | None, chips: SimChips
) -> tuple[ChipTestBoard, str, bool]:
    """The board to replay ``call`` on, how it is described, and whether it is exact.

    Parameters
    ----------
    call : PlanCall
        The recorded call.
    url : str, optional
        The board to replay on (``labcim.connect``); the replay is exact if it reports
        the recorded chip state in its IDENTIFY reply.  Default: the simulated chip
        rebuilt from the record (`SimChips`), or one like the recorded real chip
        (`chip_like`).
    chips : SimChips
        The chips of this replay session.

    Raises
    ------
    labcim.recorded.RecordedRunError
        Without ``url``: a run with no board identity, or of a technology without a
        simulated chip.
    """
    record = call.sim_record
    if url is not None:
        board = connect(url)
        board.simulator.trigger().wait(board.status_timeout)  # IDENTIFY, through the wire
        state = board.simulator.record.get()
        return board, url, bool(record and state) and matches(json.loads(state), record)
    if record is not None:
        chip, exact = chips.chip_for(record)
        spec = record["spec"]
        state = "as recorded" if exact else f"fresh, clock moved to {record['clock']:.6g} s"
        described = f"simulated {spec['preset']} seed {spec['seed']} rebuilt from the run ({state})"
        return connect_chip(chip), described, exact
    if call.identity is None:
        raise RecordedRunError(f"{call.label}: the run records no board identity; give --chip URL")
    try:
        chip = chip_like(call.identity)
    except ValueError as exc:
        raise RecordedRunError(f"{call.label}: {exc}") from None
    described = f"simulated {chip.spec.preset} like the recorded {call.identity.get('chip')}"
    return connect_chip(chip), described, False

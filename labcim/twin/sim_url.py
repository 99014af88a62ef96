"""``sim://`` URLs: the name of a simulated chip, and the board that simulates it here.

The one parser of a simulated chip's URL, for ``labcim.connect``, ``labcim sim serve
--chip`` and replay's ``--chip``:

- ``sim://PRESET?cores=N&seed=S&rows=R&cols=C&devices_per_polarity=D&model=M.yaml`` -- a
  fresh chip of a preset (``mock_hw.chip.PRESETS``), with the device model and periphery
  of a model file from ``labcim calibrate`` (`labcim.twin.model_file`);
- ``sim:///abs/path/chip.npz`` or ``sim://./rel/path.npz`` -- a saved chip (`save_chip`).

This module is the ``sim`` scheme of the ``labcim.transports`` entry-point group
(`check_url`, `open_url`): the simulated board (``mock_hw.board_server.BoardHandler``)
runs in this process behind ``drivers.board.InProcessTransport``, so the real client and
wire codec carry every command.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from drivers import protocol
from drivers.board import BoardClient, InProcessTransport, Transport
from drivers.urlhandler import protocol_serial
from labcim.output_files import npz_holding, write_file
from labcim.twin.model_file import load_model
from mock_hw.board_server import BoardHandler
from mock_hw.chip import PRESETS, Chip

if TYPE_CHECKING:
    from labcim.devices.board import ChipTestBoard

SIM_SCHEME = "sim://"

SIM_QUERY: dict[str, Callable[[str], Any]] = {
    "cores": int,
    "rows": int,
    "cols": int,
    "devices_per_polarity": int,
    "seed": int,
    "model": lambda path: load_model(path).chip_options(),
}
"""The one place where ``sim://PRESET?...`` query keys map to ``Chip.from_preset``
keywords, with the type each value is parsed as; a parser that returns a dict gives
several keywords (``model=PATH.yaml``: the ``model_params`` and ``periphery`` of a model
file, `labcim.twin.model_file`)."""


def parse_sim_url(url: str) -> tuple[str, dict[str, Any]]:
    """The preset (or saved chip's path) and the ``Chip.from_preset`` keywords of a
    ``sim://`` URL, checked; no chip is built (a model file is read and checked).

    Raises
    ------
    ValueError
        Not a ``sim://`` URL, an unknown preset (naming the presets), an unknown query
        key (naming the allowed ones), a value that does not parse or is out of range
        (``cores``, ``rows``, ``cols``, ``devices_per_polarity``, ``seed``), a query on a
        saved chip.
    """
    if not url.startswith(SIM_SCHEME):
        raise ValueError(f"{url}: not a simulated chip's URL (sim://PRESET?... or sim:///chip.npz)")
    target, _, query = url.removeprefix(SIM_SCHEME).partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ValueError(f"{url}: malformed query ({exc})") from None
    if target in PRESETS:
        options = _sim_options(url, pairs)
        try:
            Chip.preset_spec(target, **options)
        except ValueError as exc:  # named as the URL names it: cores=, not n_cores
            raise ValueError(f"{url}: {str(exc).replace('n_cores', 'cores')}") from None
        return target, options
    if "/" in target or target.endswith(".npz"):
        if pairs:
            raise ValueError(f"{url}: a saved chip takes no query options")
        return target, {}
    raise ValueError(
        f"{url}: {target!r} is neither a chip preset ({', '.join(sorted(PRESETS))}) nor a "
        "path (sim:///abs/chip.npz, sim://./rel/chip.npz)"
    )


def _sim_options(url: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        parsed = protocol_serial.parse_options(pairs, SIM_QUERY, "option")
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None
    options: dict[str, Any] = {}
    for key, value in parsed.items():  # a parser that returns a dict gives several keywords
        options.update(value if isinstance(value, dict) else {key: value})
    return options


def chip_from_url(url: str) -> Chip:
    """The simulated chip a ``sim://`` URL names: a fresh preset or a saved file.

    Raises
    ------
    ValueError
        As `parse_sim_url`; ``mock_hw.errors.InvalidRequestError`` (a ValueError) for
        a geometry the chip refuses or a file that is not a saved chip.
    """
    target, options = parse_sim_url(url)
    return Chip.from_preset(target, **options) if target in PRESETS else Chip.load(target)


def check_url(url: str) -> dict[str, Any]:
    """Check a ``sim://`` URL without building the chip (`parse_sim_url`).

    Returns
    -------
    dict
        No board-client options: a ``sim://`` query holds the chip's.
    """
    parse_sim_url(url)
    return {}


def open_url(url: str) -> Transport:
    """The in-process link to a simulated board with the chip ``url`` names."""
    return open_chip(chip_from_url(url))


def open_chip(chip: Chip) -> Transport:
    """The in-process link to a simulated board with ``chip`` behind it.

    The board advertises frames of up to ``protocol.MAX_PAYLOAD`` (2 MiB) rather than a
    real FPGA's 64 KiB (what ``labcim sim serve`` keeps): its buffer is process memory,
    and a function call drops no bytes, so a 1 MB conductance read is one frame, not 18,
    and the codec's per-frame work is paid once (docs/performance.md).
    """
    return InProcessTransport(BoardHandler(chip, max_payload=protocol.MAX_PAYLOAD))


def connect_chip(
    chip: Chip, *, name: str = "board", status_timeout: float = 60.0, **options: Any
) -> ChipTestBoard:
    """The board of an existing simulated ``chip``, as ``labcim.connect`` gives it.

    For a chip built in Python rather than named by a URL, e.g. the chip a replay
    rebuilds from a run's record.  ``options`` go to the board client.
    """
    # Imported here, not above: ``labcim sim serve`` parses sim:// URLs with this module
    # and needs none of ophyd, which the board's device class loads.
    from labcim.connection import board_device

    client = BoardClient(open_chip(chip), **options)
    return board_device(client, name=name, status_timeout=status_timeout)


def save_chip(board: ChipTestBoard, path: str | PathLike[str]) -> None:
    """Save the complete state of the chip behind a ``sim://`` board to ``path`` (.npz).

    A simulator-only convenience: ``sim:///abs/path.npz`` continues exactly where the
    chip stopped (e.g. for an exact replay of a single later run of a campaign).  It
    reaches the chip in this process, so it works only for boards this process
    simulates; what a plan or a user reads from the chip always goes through the wire.

    Raises
    ------
    ValueError
        ``board`` is not a board simulated in this process.
    ForeignFileError
        ``path`` holds a file that is not a saved chip (it is left as it is).
    """
    handler = getattr(board.client.transport, "board", None)
    if not isinstance(handler, BoardHandler):
        raise ValueError(f"{board.name}: not a board simulated in this process (sim://)")
    write_file(path, handler.chip.save, npz_holding("_header"), "chip state file")

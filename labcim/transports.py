"""Board links by URL scheme: one registry through which `labcim.connect` opens every URL.

A board URL's scheme says how the board is reached (docs/devices.md has the table):

- a scheme of the ``labcim.transports`` entry-point group: the project registers
  ``sim`` (a simulated chip in this process, `labcim.twin.sim_url`) and ``arc2`` (an
  ArC TWO board, `labcim.arc2`), a lab's package
  adds its own the same way and it overrides nothing else;
- any other scheme pyserial has a URL handler for (``serial``, registered by
  `drivers.urlhandler`, ``socket``, ``rfc2217``, ``loop``, ...): `PySerial`;
- no scheme: a device path (``/dev/ttyUSB0``, ``COM3``), opened by pyserial at its
  default settings.

An entry point of the group names an object (a module will do) with two functions::

    check_url(url: str) -> dict     # check without opening anything; raise ValueError
                                    # naming what is wrong; return the board-client
                                    # options the URL's query gives (CLIENT_OPTIONS)
    open_url(url: str) -> Transport # the byte stream to the board (drivers.board.Transport)

A scheme whose board is reached through a vendor library rather than a byte stream
(``arc2``, `labcim.arc2`) also has ``open_client(url, **options)``, which `connect` then
calls instead: the object it returns answers the calls the devices make of a
``drivers.board.BoardClient``.

Entry points are loaded only when a URL of their scheme is checked or opened, so the
simulator is not imported by ``import labcim`` or by a lab that drives real boards.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import serial

from drivers.board import SerialTransport, Transport
from drivers.urlhandler import protocol_serial
from labcim.registry import registered

TRANSPORTS_GROUP = "labcim.transports"
"""Entry-point group of board URL schemes (scheme name -> `Scheme`)."""

CLIENT_OPTIONS: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "retries": int,
    "max_frame": int,
}
"""Options of the board client (``drivers.board.BoardClient``): keywords of `connect`, or
query keys of a pyserial URL, with the type a query value is parsed as."""


class Scheme(Protocol):
    """How the board URLs of one scheme are checked and opened."""

    def check_url(self, url: str) -> dict[str, Any]:
        """Check ``url`` without opening anything; return the client options it gives.

        Raises
        ------
        ValueError
            Naming what is wrong and what is allowed.
        """
        ...

    def open_url(self, url: str) -> Transport:
        """Open the link to the board at ``url`` (already checked).

        Raises
        ------
        drivers.board.LinkError
            The board cannot be reached.
        """
        ...


class PySerial:
    """Every URL :func:`serial.serial_for_url` opens, and bare device paths.

    The board client's options (`CLIENT_OPTIONS`) are taken out of the query; the rest
    goes to pyserial.
    """

    def check_url(self, url: str) -> dict[str, Any]:
        """The client options of ``url``'s query (`board_link`)."""
        return board_link(url)[1]

    def open_url(self, url: str) -> Transport:
        """A `drivers.board.SerialTransport` on what pyserial opens."""
        return SerialTransport(board_link(url)[0])


PYSERIAL = PySerial()


def scheme_of(url: str) -> Scheme:
    """The scheme that checks and opens ``url``: registered first, then pyserial's.

    Raises
    ------
    ValueError
        An empty URL, or a scheme nothing handles (naming the schemes there are).
    """
    if not url:
        raise ValueError("empty board URL")
    if "://" not in url:
        return PYSERIAL  # a device path
    name = url.split("://", 1)[0].lower()
    entries = registered(TRANSPORTS_GROUP, "board URL scheme")
    if name in entries:
        return entries[name].load()
    if name in pyserial_schemes():
        return PYSERIAL
    known = sorted({*entries, *pyserial_schemes()})
    raise ValueError(
        f"{url}: unknown URL scheme {name!r}; board URLs: "
        + ", ".join(f"{s}://" for s in known)
        + ", or a device path"
    )


def board_link(url: str) -> tuple[str, dict[str, Any]]:
    """A pyserial URL (or device path) checked, and split into what pyserial opens and
    the board client's options (`CLIENT_OPTIONS`) from its query.

    Nothing is opened: a URL that passes may still name a port that is not there.

    Raises
    ------
    ValueError
        An empty URL, a scheme pyserial has no handler for (naming those it has), an
        unknown client option or serial setting, a value that does not parse.
    """
    if not url:
        raise ValueError("empty board URL")
    if "://" not in url:
        return url, {}  # a device path, opened at pyserial's default settings
    scheme = url.split("://", 1)[0].lower()
    if scheme not in pyserial_schemes():
        raise ValueError(
            f"{url}: pyserial has no handler for {scheme!r}; it has "
            + ", ".join(f"{s}://" for s in sorted(pyserial_schemes()))
        )
    base, _, query = url.partition("?")
    kept, client = [], {}
    for key, text in parse_qsl(query, keep_blank_values=True):
        if key not in CLIENT_OPTIONS:
            kept.append((key, text))
            continue
        if key in client:
            raise ValueError(f"{url}: option {key!r} given twice")
        try:
            client[key] = value = CLIENT_OPTIONS[key](text)
        except ValueError:
            value = -1
        if value < 0 or (key == "timeout" and not value > 0):
            allowed = "a number of seconds > 0" if key == "timeout" else "an integer >= 0"
            raise ValueError(f"{url}: {key}={text!r} must be {allowed}")
    if scheme == protocol_serial.SCHEME:
        if not base.removeprefix(url[: len(scheme) + 3]):
            raise ValueError(f"{url}: no port, e.g. serial:///dev/ttyUSB0 or serial://COM3")
        try:
            protocol_serial.parse_options(kept, protocol_serial.SETTINGS)
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
    return base + ("?" + urlencode(kept) if kept else ""), client


def pyserial_schemes() -> set[str]:
    """URL schemes :func:`serial.serial_for_url` has a handler for (``serial``, ``socket``,
    ``rfc2217``, ``loop``, ...), found as pyserial finds them."""
    schemes = set()
    for package in serial.protocol_handler_packages:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            schemes |= {
                p.stem.removeprefix("protocol_") for p in Path(folder).glob("protocol_*.py")
            }
    return schemes

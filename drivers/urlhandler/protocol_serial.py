"""``serial://PORT[?setting=value&...]``: a local serial port with its line settings.

pyserial opens a bare device path (``/dev/ttyUSB0``, ``COM3``) as a local port at its
default settings (9600 baud, 8N1, no flow control) but has no URL scheme for one, so the
settings cannot travel with the port in a single string (a campaign file's ``chip:``, a
``--chip`` option).  This handler gives the port a scheme and reads the settings from
the query: ``serial:///dev/ttyUSB0?baudrate=115200&parity=E`` opens ``/dev/ttyUSB0`` at
115200 baud, even parity; ``serial://COM3?baudrate=3000000`` a Windows port.

The settings (:data:`SETTINGS`) are those of :class:`serial.Serial`; read timeouts are
not among them, since the reader of the port chooses how it waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import serial

SCHEME = "serial"

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _baudrate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("must be a positive integer (bit/s)")
    return value


def _bytesize(text: str) -> int:
    value = int(text)
    if value not in serial.Serial.BYTESIZES:
        raise ValueError(f"must be one of {list(serial.Serial.BYTESIZES)}")
    return value


def _parity(text: str) -> str:
    names = {name.lower(): code for code, name in serial.PARITY_NAMES.items()}
    value = names.get(text.lower(), text.upper())
    if value not in serial.Serial.PARITIES:
        raise ValueError(f"must be one of {', '.join(serial.Serial.PARITIES)} (or their names)")
    return value


def _stopbits(text: str) -> float:
    value = float(text)
    if value not in serial.Serial.STOPBITS:
        raise ValueError(f"must be one of {', '.join(map(str, serial.Serial.STOPBITS))}")
    return int(value) if value.is_integer() else value


def _flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"must be one of {', '.join(_TRUE + _FALSE)}")


SETTINGS: dict[str, Callable[[str], Any]] = {
    "baudrate": _baudrate,
    "bytesize": _bytesize,
    "parity": _parity,
    "stopbits": _stopbits,
    "rtscts": _flag,
    "xonxoff": _flag,
    "dsrdtr": _flag,
    "exclusive": _flag,
}
"""Query keys of a ``serial://`` URL, each parsed into the :class:`serial.Serial`
attribute of the same name."""


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The port and the settings a ``serial://`` URL names.

    Raises
    ------
    ValueError
        Not a ``serial://`` URL, no port, or a bad setting (:func:`parse_settings`),
        the message starting with the URL.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"{url}: not a {SCHEME}:// URL")
    port = parts.netloc + parts.path
    if not port:
        raise ValueError(f"{url}: no port, e.g. {SCHEME}:///dev/ttyUSB0 or {SCHEME}://COM3")
    try:
        return port, parse_options(parse_qsl(parts.query, keep_blank_values=True), SETTINGS)
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None


def parse_options(
    pairs: Iterable[tuple[str, str]],
    parsers: Mapping[str, Callable[[str], Any]],
    noun: str = "setting",
) -> dict[str, Any]:
    """``(key, text)`` query pairs parsed by ``parsers[key]`` (:data:`SETTINGS` for
    ``serial://``; any URL's query table, e.g. ``labcim.twin.sim_url.SIM_QUERY``).

    Raises
    ------
    ValueError
        An unknown or repeated key (naming the allowed ones); a value its parser
        refuses: with the parser's reason when it gives one (``must be ...``, or a
        ValueError subclass of its own), else naming the expected type.
    """
    options: dict[str, Any] = {}
    for key, text in pairs:
        if key not in parsers:
            raise ValueError(f"unknown {noun} {key!r}; allowed: {', '.join(sorted(parsers))}")
        if key in options:
            raise ValueError(f"{noun} {key!r} given twice")
        parse = parsers[key]
        try:
            options[key] = parse(text)
        except ValueError as exc:
            if type(exc) is not ValueError:  # e.g. a model file's own error
                raise
            reason = str(exc) if str(exc).startswith("must") else f"is not of type {parse.__name__}"
            raise ValueError(f"{key}={text!r} {reason}") from None
    return options


class Serial(serial.Serial):
    """The platform's local serial port, opened from a ``serial://`` URL.

    ``port`` stays the URL (as for pyserial's other handlers); ``name`` is the device.
    """

    def open(self) -> None:
        """Apply the URL's settings, then open the device."""
        try:
            device, settings = parse_url(self.port)
        except ValueError as exc:
            raise serial.SerialException(str(exc)) from None
        self.portstr = self.name = device
        for key, value in settings.items():
            setattr(self, key, value)
        super().open()

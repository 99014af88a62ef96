"""A lab's own board URL scheme, registered under ``labcim.transports``.

``lab://PORT`` is the lab's name for its board on ``127.0.0.1:PORT``: a stand-in for a
scheme that finds a board by serial number, a lab database entry, ...
"""

from drivers.board import SerialTransport, Transport

SCHEME = "lab://"


def _port(url: str) -> int:
    text = url.removeprefix(SCHEME)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{url}: lab://PORT needs a TCP port in 1..65535")
    return int(text)


def check_url(url: str) -> dict:
    """Check the port; no board-client options."""
    _port(url)
    return {}


def open_url(url: str) -> Transport:
    """The board on 127.0.0.1 at that port."""
    return SerialTransport(f"socket://127.0.0.1:{_port(url)}")

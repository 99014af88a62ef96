"""The lab's status page: every station, its queue, the running plan's progress, live.

A small web page served on 127.0.0.1 (``labcim stations page``).  Its data come from
the stations' own API only (`labcim.stations.client`): a background thread polls every
station once per ``interval`` and the page's script fetches ``/api/stations`` (JSON)
each second; ``/api/figure/NAME`` gives the last run's figure of a station as a PNG
data URL.  The page only reads: queueing, pausing and stopping stay with the
queueserver API and its clients.  The page itself is ``page.html`` beside this module.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from labcim.stations.client import call_function, station_state
from labcim.stations.registry import Station

#: The page (HTML and its script), shipped beside this module.
PAGE = (Path(__file__).parent / "page.html").read_bytes()


class LabStatus:
    """The latest state of every station, refreshed by a background thread.

    Parameters
    ----------
    stations : callable
        Returns the stations to show (called at every refresh, so stations started
        later appear).
    interval : float
        Seconds between two polls of all stations.
    """

    def __init__(self, stations: Callable[[], Sequence[Station]], interval: float = 1.0) -> None:
        self._stations = stations
        self.interval = interval
        self._states: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="labcim-status", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (returns once the thread ended)."""
        self._stop.set()
        self._thread.join()

    def states(self) -> list[dict[str, Any]]:
        """What the last poll found (`station_state` of each station)."""
        with self._lock:
            return list(self._states)

    def figure(self, name: str) -> dict[str, Any]:
        """The last figure of station ``name`` (``{"uid", "png"}``, empty if none)."""
        for station in self._stations():
            if station.name == name:
                api = station.api()
                try:
                    return call_function(api, "labcim_figure", timeout=20.0)
                except Exception:
                    return {"uid": "", "png": ""}
                finally:
                    api.close()
        return {"uid": "", "png": ""}

    def _poll(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            states = [station_state(s) for s in self._stations()]
            with self._lock:
                self._states = states
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def make_server(
    status: LabStatus, host: str = "127.0.0.1", port: int = 8780
) -> ThreadingHTTPServer:
    """The HTTP server of the page (``serve_forever`` to run it; port 0: any free one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/":
                self._send(200, "text/html; charset=utf-8", PAGE)
            elif self.path == "/api/stations":
                self._send(200, "application/json", json.dumps(status.states()).encode())
            elif self.path.startswith("/api/figure/"):
                name = self.path.removeprefix("/api/figure/")
                self._send(200, "application/json", json.dumps(status.figure(name)).encode())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request each second would drown the terminal

    return ThreadingHTTPServer((host, port), Handler)

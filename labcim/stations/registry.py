"""Where the stations are: one small JSON file per running station of this machine.

``labcim station`` writes ``<stations dir>/<name>.json`` once its RE Manager answers
and removes it when it stops; ``labcim stations``, the status page and campaigns find
stations by name there.  Stations on other machines are given by address instead
(`Station.from_spec`, the ``stations:`` section of a campaign file).

The stations directory is ``$LABCIM_STATIONS_DIR``, else
``$XDG_STATE_HOME/labcim/stations`` (``~/.local/state/labcim/stations``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Station names: they become file names, Redis key prefixes and tiled keys.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: Public key of a station's encrypted 0MQ control socket, for clients.
PUBLIC_KEY_ENV = "QSERVER_ZMQ_PUBLIC_KEY"


class StationError(ValueError):
    """A station that cannot be found, started or reached; the message says which and why."""


@dataclass(frozen=True)
class Station:
    """How to reach one station.

    Attributes
    ----------
    name : str
        The station's name.
    control : str
        0MQ control address of its RE Manager, as a client connects to it
        (``tcp://127.0.0.1:60615``).
    info : str
        0MQ address where it publishes console output (``""``: not published).
    results : str
        Its results directory (run files), as seen from this machine; ``""`` if not
        reachable from here.
    chip : str
        The board URL it drives (information only).
    public_key : str
        Public key of its encrypted control socket (``""``: not encrypted).
    pid, manager_pid : int
        The ``labcim station`` process and its ``start-re-manager`` (0 when remote).
    """

    name: str
    control: str
    info: str = ""
    results: str = ""
    chip: str = ""
    public_key: str = ""
    pid: int = 0
    manager_pid: int = 0

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any], where: str = "") -> Station:
        """A station given by address (``{control: tcp://host:port, results: path, ...}``).

        Raises
        ------
        StationError
            Naming the field (prefixed with ``where``) that is unknown or not a string.
        """
        check_name(name, where.rstrip(".") or "name")
        fields = {f.name for f in dataclasses.fields(cls)} - {"name", "pid", "manager_pid"}
        errors = [
            f"{where}{key}: unknown field; allowed: {', '.join(sorted(fields))}"
            for key in spec
            if key not in fields
        ]
        errors += [
            f"{where}{key}: expected a string; got {value!r}"
            for key, value in spec.items()
            if key in fields and not isinstance(value, str)
        ]
        if "control" not in spec:
            errors.append(f"{where}control: missing (the station's 0MQ address, tcp://HOST:PORT)")
        if errors:
            raise StationError("\n".join(errors))
        return cls(name=name, **{k: v for k, v in spec.items() if k in fields})

    def api(self, *, timeout: float = 2.0) -> Any:
        """A bluesky-queueserver-api client of this station (``REManagerAPI``, 0MQ).

        ``timeout`` (s) bounds each request, so a dead station is noticed.  The client
        is `labcim.stations.control.ManagerAPI`: the same API, with a race of
        queueserver's threaded client mended.
        """
        from labcim.stations.control import ManagerAPI

        return ManagerAPI(
            zmq_control_addr=self.control,
            zmq_info_addr=self.info or None,
            zmq_public_key=self.public_key or os.environ.get(PUBLIC_KEY_ENV) or None,
            timeout_recv=timeout,
            timeout_send=timeout,
            request_fail_exceptions=True,
        )


def check_name(name: Any, field: str = "name") -> str:
    """``name`` if it is a valid station name, else StationError naming ``field``."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise StationError(
            f"{field}: station name {name!r} must be 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def stations_dir() -> Path:
    """The directory of this machine's station files (created if missing)."""
    given = os.environ.get("LABCIM_STATIONS_DIR")
    if given:
        path = Path(given)
    else:
        state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        path = Path(state) / "labcim" / "stations"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(station: Station) -> Path:
    """Write ``station``'s file (atomically: a reader never sees half of it)."""
    path = stations_dir() / f"{station.name}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(dataclasses.asdict(station), indent=1))
    partial.replace(path)
    return path


def remove(name: str, pid: int) -> None:
    """Remove the file of station ``name`` if it is still the one process ``pid`` wrote."""
    path = stations_dir() / f"{name}.json"
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def alive(station: Station) -> bool:
    """Whether the ``labcim station`` process of a local station still runs."""
    if station.pid <= 0:
        return True  # remote: only its API can tell
    try:
        os.kill(station.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def local_stations() -> list[Station]:
    """The stations with a file here, sorted by name (including ones whose process died)."""
    found = []
    for path in sorted(stations_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            found.append(Station(**data))
        except (OSError, ValueError, TypeError):
            continue  # a file being replaced, or not ours
    return found


def find(name: str) -> Station:
    """The local station called ``name``.

    Raises
    ------
    StationError
        If there is none (the message lists those there are).
    """
    known = {s.name: s for s in local_stations()}
    if name not in known:
        listed = ", ".join(known) or f"none in {stations_dir()}"
        raise StationError(f"no station {name!r} on this machine; stations: {listed}")
    return known[name]


def resolve(spec: Any, where: str = "stations") -> list[Station]:
    """Stations from a campaign's ``stations:`` value or ``--stations a,b``.

    ``spec`` is a list of local station names (or a comma-separated string of them),
    or a mapping of name to `Station.from_spec` fields for stations elsewhere.

    Raises
    ------
    StationError
        Naming each entry that is not a station, or a station named twice.
    """
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    errors, stations = [], []
    if isinstance(spec, Mapping):
        for name, fields in spec.items():
            try:
                if not isinstance(fields, Mapping):
                    raise StationError(f"{where}.{name}: expected a mapping; got {fields!r}")
                stations.append(Station.from_spec(name, fields, f"{where}.{name}."))
            except StationError as exc:
                errors.append(str(exc))
    elif isinstance(spec, list) and spec:
        for i, name in enumerate(spec, start=1):
            try:
                stations.append(find(check_name(name, f"{where}[{i}]")))
            except StationError as exc:
                errors.append(str(exc) if str(exc).startswith(where) else f"{where}[{i}]: {exc}")
    else:
        errors.append(f"{where}: expected station names or a mapping of name to address")
    names = [s.name for s in stations]
    errors += [
        f"{where}: station {n!r} given twice" for n in sorted(set(names)) if names.count(n) > 1
    ]
    if errors:
        raise StationError("\n".join(errors))
    return stations

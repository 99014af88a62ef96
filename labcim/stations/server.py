"""``labcim station``: one board behind a bluesky-queueserver RE Manager, until stopped.

`run_station` starts a Redis-protocol server for the station's queue (unless given
one), then queueserver's ``start-re-manager`` (through `labcim.stations.re_manager`)
with `labcim.stations.profile` as startup code, opens the worker environment (which
connects the board), records the station in `labcim.stations.registry` and waits.
Ctrl-C (SIGINT) or SIGTERM closes the environment and stops the manager and Redis; if
the manager dies, the rest of its process tree is killed (see `labcim.stations.process`)
and the command exits with 1.

Addresses bind to 127.0.0.1 unless told otherwise; binding the control socket to any
other address requires queueserver's encryption (``QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER``,
a key pair from ``qserver-zmq-keys``), so that nobody on the network can queue plans.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from labcim.stations import registry
from labcim.stations.process import kill_group, reaper, redis_pid, redis_server
from labcim.stations.registry import Station, StationError

#: queueserver's environment variable holding the control socket's private key.
PRIVATE_KEY_ENV = "QSERVER_ZMQ_PRIVATE_KEY_FOR_SERVER"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Only the plans of the entry points and labcim's two status functions may be called.
PERMISSIONS = {
    "user_groups": {
        "root": {
            "allowed_plans": [None],
            "forbidden_plans": [":^_"],
            "allowed_devices": [None],
            "forbidden_devices": [":^_:?.*"],
            "allowed_functions": [None],
            "forbidden_functions": [":^_"],
        },
        "primary": {
            "allowed_plans": [":.*"],
            "forbidden_plans": [None],
            "allowed_devices": [":?.*:depth=5"],
            "forbidden_devices": [None],
            "allowed_functions": ["labcim_status", "labcim_figure"],
            "forbidden_functions": [None],
        },
    }
}


@dataclass(frozen=True)
class StationOptions:
    """What ``labcim station`` was given (see ``labcim station --help``)."""

    chip: str
    name: str
    results: Path
    control_addr: str = "tcp://127.0.0.1:60615"
    info_addr: str = "tcp://127.0.0.1:60625"
    redis: str = ""
    files: Path = Path()
    startup_timeout: float = 120.0
    suspend: dict[str, dict[str, float]] = field(default_factory=dict)
    """`labcim.suspenders.LinkSuspender` options per ``board.fpga`` signal (checked)."""


def client_address(bind: str, field: str) -> str:
    """The address a local client connects to for server address ``bind``.

    Raises
    ------
    StationError
        If ``bind`` is not ``tcp://HOST:PORT``.
    """
    parts = urlsplit(bind)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None:
        raise StationError(
            f"{field}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:60615); got {bind!r}"
        )
    host = parts.hostname
    return f"tcp://127.0.0.1:{port}" if host in ("*", "0.0.0.0") else bind


def check_options(options: StationOptions) -> tuple[str, str, str]:
    """The client control and info addresses and the control public key ("" if none).

    Raises
    ------
    StationError
        A bad name, address or results location, or a control address beyond
        loopback without encryption.
    """
    registry.check_name(options.name, "--name")
    control = client_address(options.control_addr, "--control-addr")
    info = client_address(options.info_addr, "--info-addr")
    if urlsplit(options.control_addr).port == urlsplit(options.info_addr).port:
        raise StationError("--info-addr: must use another port than --control-addr")
    private = os.environ.get(PRIVATE_KEY_ENV, "")
    if urlsplit(options.control_addr).hostname not in LOOPBACK and not private:
        raise StationError(
            f"--control-addr {options.control_addr}: beyond 127.0.0.1 the control socket "
            f"must be encrypted: set {PRIVATE_KEY_ENV} (a key pair from qserver-zmq-keys) "
            "and give clients the public key (docs/stations.md)"
        )
    if options.results.suffix in (".h5", ".hdf5", ".hdf", ".nxs", ".nx5"):
        raise StationError(
            f"--results {options.results}: a station writes a directory of run files "
            "(so tiled can serve it); give a directory, not an .h5 index file"
        )
    public = ""
    if private:
        import zmq

        try:
            public = zmq.curve_public(private.encode()).decode()
        except (ValueError, zmq.ZMQError) as exc:
            raise StationError(f"{PRIVATE_KEY_ENV}: not a z85-encoded private key: {exc}") from None
    return control, info, public


def run_station(options: StationOptions, out: Any = sys.stdout) -> int:
    """Run the station until SIGINT or SIGTERM; return the exit status.

    Raises
    ------
    StationError
        Before anything starts: bad options (`check_options`), or a running station
        with the same name.
    """
    control, info, public = check_options(options)
    try:
        other = registry.find(options.name)
    except StationError:
        other = None
    if other is not None and registry.alive(other):
        raise StationError(f"--name {options.name}: station already running (pid {other.pid})")
    workdir = registry.stations_dir() / options.name
    workdir.mkdir(exist_ok=True)
    results = options.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    stop = _stop_on_signals()
    with contextlib.ExitStack() as stack:
        redis = options.redis or stack.enter_context(redis_server(workdir / "redis"))
        manager = stack.enter_context(_manager(options, workdir, results, redis))
        # A given --redis is not ours to stop; the one we started dies with us.
        stack.enter_context(reaper(manager.pid, [] if options.redis else [redis_pid(redis)]))
        station = Station(
            name=options.name,
            control=control,
            info=info,
            results=str(results),
            chip=options.chip,
            public_key=public,
            pid=os.getpid(),
            manager_pid=manager.pid,
        )
        api = station.api(timeout=5.0)
        error = _open_environment(api, manager, options.startup_timeout)
        if error:
            log = workdir / "manager.log"
            print(f"station {options.name}: {error}{_startup_error(log)}", file=sys.stderr)
            return 1
        registry.save(station)
        stack.callback(registry.remove, station.name, station.pid)
        print(
            f"station {options.name} ready: {options.chip}, control {control}, "
            f"results {results} (Ctrl-C stops it)",
            file=out,
            flush=True,
        )
        while manager.poll() is None and not stop.wait(0.2):
            pass
        if manager.poll() is not None:
            print(
                f"station {options.name}: the RE Manager exited (status {manager.returncode}); "
                f"see {workdir / 'manager.log'}",
                file=sys.stderr,
            )
            return 1
        _close(api, manager)
        print(f"station {options.name} stopped", file=out)
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@contextlib.contextmanager
def _manager(
    options: StationOptions, workdir: Path, results: Path, redis: str
) -> Iterator[subprocess.Popen]:
    """``start-re-manager`` in its own process group, killed with its group at the end."""
    config = workdir / "station.json"
    config.write_text(
        json.dumps(
            {
                "name": options.name,
                "chip": options.chip,
                "results": str(results),
                "suspend": options.suspend,
            }
        )
    )
    permissions = workdir / "user_group_permissions.yaml"
    permissions.write_text(yaml.safe_dump(PERMISSIONS))
    existing = workdir / "existing_plans_and_devices.yaml"
    existing.unlink(missing_ok=True)  # rebuilt from this version's plans when opened
    command = [
        sys.executable, "-m", "labcim.stations.re_manager",  # start-re-manager, plans loaded
        "--startup-module", "labcim.stations.profile",
        "--existing-plans-devices", str(existing),
        "--user-group-permissions", str(permissions),
        "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
        "--redis-addr", redis,
        "--redis-name-prefix", f"labcim_{options.name}",
        "--zmq-control-addr", options.control_addr,
        "--zmq-info-addr", options.info_addr,
        "--zmq-publish-console", "ON",
    ]  # fmt: skip
    env = {**os.environ, "LABCIM_STATION_CONFIG": str(config), "MPLBACKEND": "Agg"}
    with open(workdir / "manager.log", "ab") as log:
        manager = subprocess.Popen(
            command,
            cwd=options.files,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield manager
    finally:
        kill_group(manager.pid)
        manager.wait()


def _open_environment(api: Any, manager: subprocess.Popen, timeout: float) -> str:
    """Open the worker environment; return why it failed ("" on success)."""
    deadline = time.monotonic() + timeout
    while True:
        if manager.poll() is not None:
            return f"the RE Manager exited at start (status {manager.returncode})"
        try:
            api.status()
            break
        except Exception:
            if time.monotonic() > deadline:
                return "the RE Manager did not answer"
            time.sleep(0.2)
    try:
        api.environment_open()
        api.wait_for_idle(timeout=max(1.0, deadline - time.monotonic()))
        if api.status()["worker_environment_exists"]:
            return ""
    except Exception as exc:
        return f"opening the worker environment failed: {exc}"
    return "the worker environment did not open (its startup code failed)"


def _close(api: Any, manager: subprocess.Popen) -> None:
    """Close the environment (a running plan is stopped as by a crash) and the manager."""
    with contextlib.suppress(Exception):
        if api.status()["manager_state"] == "idle":
            api.environment_close()
        else:
            api.environment_destroy()
        api.wait_for_idle(timeout=30)
        api.send_request(method="manager_stop", params={"option": "safe_off"})  # no API method
    with contextlib.suppress(subprocess.TimeoutExpired):
        manager.wait(timeout=15)


#: How the RE Worker logs the exception its startup code (the station profile) raised.
_STARTUP_ERROR = re.compile(r"^Error while loading module '[^']*': (.+)$", re.M)


def _startup_error(log: Path) -> str:
    """``": <the profile's exception> (details in LOG)"``, the one line a station that
    did not start prints; the log holds the traceback."""
    try:
        found = _STARTUP_ERROR.findall(log.read_text(errors="replace"))
    except OSError:
        found = []
    return (f": {found[-1].strip()}" if found else "") + f" (details in {log})"

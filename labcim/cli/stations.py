"""``labcim stations [list|page|data]``: the stations, their status page, their data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labcim.cli import tcp_port


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stations`` subcommand."""
    parser = subparsers.add_parser(
        "stations",
        help="list the test stations, serve their status page or their data (tiled)",
        description="list (default): the stations started with 'labcim station' on this "
        "machine (or those of --stations): state, queue length, the running plan and its "
        "progress, the last run.  page: serve the lab's status page on --host:--port.  "
        "data ROOT: serve every station's runs below ROOT through tiled, new runs as "
        "they appear.  See "
        "docs/stations.md; needs pip install 'labcim[stations]'.",
    )
    parser.add_argument("action", nargs="?", default="list", choices=("list", "page", "data"))
    parser.add_argument("root", nargs="?", type=Path, help="data: the directory of results")
    parser.add_argument(
        "--stations", metavar="NAME,...", help="only these stations of this machine"
    )
    parser.add_argument("--host", default="127.0.0.1", help="page, data: address to bind")
    parser.add_argument("--port", type=tcp_port, help="page (default 8780), data (default 8000)")
    parser.add_argument(
        "--api-key", default="", help="data: tiled's API key (default: a random one, printed)"
    )
    parser.add_argument(
        "--public", action="store_true", help="data: no API key needed to read (loopback only)"
    )
    parser.set_defaults(func=stations, parser=parser)


def stations(args: argparse.Namespace) -> int:
    """Run the action; return its exit status."""
    from labcim.stations import registry

    def chosen() -> list[registry.Station]:
        if args.stations:
            return registry.resolve(args.stations, "--stations")
        return registry.local_stations()

    try:
        if args.action == "data":
            return _data(args)
        found = chosen()
        if args.action == "page":
            return _page(chosen, args)
    except registry.StationError as exc:
        print(f"labcim stations: {exc}", file=sys.stderr)
        return 2
    return _list(found)


def _list(found: list[Any]) -> int:
    from labcim.stations import registry
    from labcim.stations.client import station_state

    if not found:
        print(f"no stations (none started here; station files in {registry.stations_dir()})")
        return 0
    unreachable = 0
    for station in found:
        state = station_state(station)
        unreachable += not state["reachable"]
        print(describe(state))
    return 1 if unreachable else 0


def _page(chosen: Any, args: argparse.Namespace) -> int:
    from labcim.stations.page import LabStatus, make_server

    status = LabStatus(chosen)
    server = make_server(status, args.host, 8780 if args.port is None else args.port)
    host, port = server.server_address[:2]
    print(f"status page on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    status.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        status.stop()
    return 0


def _data(args: argparse.Namespace) -> int:
    from labcim.stations.results_server import serve_results

    if args.root is None:
        args.parser.error("data: give the directory holding the stations' results")
    return serve_results(
        args.root,
        host=args.host,
        port=8000 if args.port is None else args.port,
        api_key=args.api_key,
        public=args.public,
    )


def describe(state: dict[str, Any]) -> str:
    """A few lines about one station (`labcim.stations.client.station_state`)."""
    head = f"{state['name']}  {state['chip']}  {state['control']}"
    if not state["reachable"]:
        return f"{head}\n  not answering: {state['error']}"
    lines = [head, f"  {state['manager_state']}, {state['queue']} item(s) queued"]
    running = state["running"]
    if running:
        total = running["num_points"]
        done = f"{running['events']}/{total}" if total else f"{running['events']}"
        what = " ".join(filter(None, (running["plan_name"], running["step_key"])))
        lines.append(f"  running {what}: {done} events")
    last = state["last"]
    if last:
        figures = ", ".join(f"{k}={v:.4g}" for k, v in list(last["figures"].items())[:4])
        what = " ".join(filter(None, (last["plan_name"], last["step_key"], last["exit_status"])))
        lines.append(f"  last {what}: {figures}" if figures else f"  last {what}")
    return "\n".join(lines)

"""The parts of the stations, fast: queueserver's own validation of the station's plans,
the progress monitor on a real RunEngine, the registry, address checks, the journal."""

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine

pytest.importorskip("bluesky_queueserver", reason="needs labcim[stations]")

from bluesky_queueserver.manager.profile_ops import (
    existing_plans_and_devices_from_nspace,
    validate_plan,
)

from labcim import HDF5Writer, connect
from labcim.campaign import CampaignError, load_campaign
from labcim.campaign.dispatch import dispatch_campaign, json_arguments
from labcim.campaign.journal import Journal, read_journal
from labcim.cli import main
from labcim.stations import registry
from labcim.stations.monitor import StationMonitor
from labcim.stations.queue_plans import queue_plans
from labcim.stations.registry import Station, StationError
from labcim.stations.server import PRIVATE_KEY_ENV, StationOptions, check_options
from plans import conductance_map, tdp_program

CHIP = "sim://pcm-small?cores=1&rows=8&cols=8&seed=2"


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """The station's plans as queueserver's manager sees them (its own functions)."""
    base = tmp_path_factory.mktemp("files")
    np.save(base / "w.npy", np.eye(4))
    board = connect(CHIP)
    nspace = {"board": board, **queue_plans("board", base)}
    plans, devices, _, _ = existing_plans_and_devices_from_nspace(nspace=nspace)
    yield plans, devices, base
    board.close()


def _validate(described, monkeypatch, **kwargs):
    plans, devices, base = described
    monkeypatch.chdir(base)  # the manager's directory: the station's --files
    item = {"name": "tdp_program", "user_group": "primary", "kwargs": kwargs}
    return validate_plan(item, allowed_plans=plans, allowed_devices=devices)


def test_queueserver_takes_a_good_item_and_names_the_board_by_default(described, monkeypatch):
    plans, _, _ = described
    (board, *rest) = plans["tdp_program"]["parameters"]
    assert board["default"] == "'board'" and board["annotation"]["devices"] == {
        "Instrument": ["board"]
    }
    assert all(p["kind"]["name"] == "KEYWORD_ONLY" for p in rest)
    assert _validate(described, monkeypatch, weights={"file": "w.npy"}, tolerance=2.0) == (True, "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [[1.0]], "tolerance": -1.0}, "tolerance = -1.0 must be finite and > 0"),
        ({"weights": [[1.0]], "scaling": "log"}, "scaling = 'log'; allowed: ['max', 'percentile']"),
        ({"weights": [[1.0], [1.0, 2.0]]}, "expected an array"),
        ({"weights": {"file": "none.npy"}}, "cannot load an array from"),
        ({"weights": [[1.0]], "cores": "all"}, "expected list of int or null; got 'all'"),
        ({"tolerance": 1.0}, "weights"),  # missing
    ],
)
def test_queueserver_refuses_a_bad_item_with_the_plans_message(
    described, monkeypatch, kwargs, message
):
    ok, error = _validate(described, monkeypatch, **kwargs)
    assert not ok and message in error


def test_the_plan_queueserver_runs_converts_json_as_a_campaign_does(described, tmp_path):
    base = described[2]
    nspace = queue_plans("board", base)
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(tmp_path / "runs"))
    board = connect(CHIP)
    try:
        (uid,) = RE(nspace["tdp_program"](board, weights={"file": "w.npy"}, max_iterations=2))
    finally:
        board.close()
    from labcim import open_runs

    run = open_runs(tmp_path / "runs")[uid]
    np.testing.assert_array_equal(run.metadata["plan_args"]["weights"], np.eye(4))


def test_the_monitor_follows_a_run_and_keeps_its_figures(tmp_path):
    results = tmp_path / "results"
    monitor = StationMonitor("st9", results)
    seen = []
    RE = RunEngine({})
    RE.subscribe(HDF5Writer(results))
    RE.subscribe(monitor)
    RE.subscribe(lambda name, doc: seen.append(monitor.status()["running"]), "event")
    assert monitor.figure() == {"uid": "", "png": ""}  # no run yet
    board = connect(CHIP)
    try:
        RE(conductance_map(board, reads=5))
        (uid,) = RE(tdp_program(board, np.eye(4), max_iterations=3))
    finally:
        board.close()
    events = [s["events"] for s in seen[:5]]
    assert events == [1, 2, 3, 4, 5] and seen[4]["progress"] == 1.0
    status = monitor.status()
    assert status["running"] is None and status["last"]["uid"] == uid
    assert status["last"]["exit_status"] == "success"
    assert status["last"]["figures"]["core0_iterations"] <= 3
    figure = monitor.figure()
    assert figure["uid"] == uid
    assert base64.b64decode(figure["png"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_registry_lists_finds_and_forgets_stations(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCIM_STATIONS_DIR", str(tmp_path))
    station = Station("st1", "tcp://127.0.0.1:60615", results=str(tmp_path), pid=12345)
    registry.save(station)
    assert registry.local_stations() == [station] and registry.find("st1") == station
    with pytest.raises(StationError, match=r"no station 'st2' on this machine; stations: st1"):
        registry.find("st2")
    registry.remove("st1", pid=999)  # not the process that wrote it: kept
    assert registry.local_stations() == [station]
    registry.remove("st1", pid=12345)
    assert registry.local_stations() == []


def test_resolve_names_each_bad_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCIM_STATIONS_DIR", str(tmp_path))
    with pytest.raises(StationError) as bad:
        registry.resolve({"a b": {"control": "x"}, "st2": {"results": 3}}, "stations")
    errors = str(bad.value).splitlines()
    assert errors[0].startswith("stations.a b: station name 'a b' must be")
    assert "stations.st2.results: expected a string; got 3" in errors
    assert "stations.st2.control: missing (the station's 0MQ address, tcp://HOST:PORT)" in errors
    (remote,) = registry.resolve({"far": {"control": "tcp://lab-2:60615", "results": "/mnt"}})
    assert (remote.name, remote.control, remote.pid) == ("far", "tcp://lab-2:60615", 0)


def test_a_control_socket_beyond_loopback_needs_encryption(monkeypatch):
    zmq = pytest.importorskip("zmq")
    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    options = StationOptions("sim://pcm-small", "st1", Path("r"), control_addr="tcp://*:60615")
    with pytest.raises(StationError, match=f"beyond 127.0.0.1 .* set {PRIVATE_KEY_ENV}"):
        check_options(options)
    public, private = zmq.curve_keypair()
    monkeypatch.setenv(PRIVATE_KEY_ENV, private.decode())
    assert check_options(options) == (
        "tcp://127.0.0.1:60615",
        "tcp://127.0.0.1:60625",
        public.decode(),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"results": Path("r.h5")}, "give a directory, not an .h5 index file"),
        ({"control_addr": "127.0.0.1:1"}, "--control-addr: expected tcp://HOST:PORT"),
        ({"info_addr": "tcp://127.0.0.1:60615"}, "--info-addr: must use another port"),
        ({"name": "../x"}, "--name: station name '../x' must be"),
    ],
)
def test_bad_station_options_are_refused_before_anything_starts(change, message):
    options = StationOptions(**{"chip": "x", "name": "st1", "results": Path("r"), **change})
    with pytest.raises(StationError, match=message.replace(".", r"\.")):
        check_options(options)


def test_json_arguments_of_a_step():
    args = {"w": np.eye(2, dtype=np.float32), "n": np.int64(3), "p": Path("a"), "c": (1, 2)}
    out = json_arguments(args)
    assert json.loads(json.dumps(out)) == {
        "w": [[1.0, 0.0], [0.0, 1.0]],
        "n": 3,
        "p": str(Path("a").resolve()),
        "c": [1, 2],
    }


def test_a_step_pinned_to_a_station_not_given_is_refused_before_dispatch(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "chip: sim://pcm-small\nout: r\nsteps:\n"
        "  - plan: conductance_map\n    station: st7\n"
        "  - plan: conductance_map\n    station: [st1]\n"
    )
    with pytest.raises(CampaignError, match=r"steps\[2\]\.station: expected a station name"):
        load_campaign(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text(
        "chip: sim://pcm-small\nout: r\nsteps:\n  - plan: conductance_map\n    station: st7\n"
    )
    campaign = load_campaign(tmp_path / "c.yaml")
    stations = [Station("st1", "tcp://127.0.0.1:1", results=str(tmp_path)), Station("st2", "x")]
    with pytest.raises(CampaignError) as refused:
        dispatch_campaign(campaign, stations)
    assert refused.value.errors == [
        f"steps: {campaign.steps[0].key} is pinned to station 'st7', not among st1, st2",
        "stations.st2: its results directory '' is not reachable from here (needed to know "
        "which steps are done)",
    ]


def test_the_journal_keeps_every_line_but_a_cut_one(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.write("dispatch", step="01-x", station="st1")
    journal.write("done", step="01-x", station="st1", run_uids=["u"])
    journal.close()
    with open(path, "a") as f:
        f.write('{"time": 1, "event": "disp')  # a crash in the middle of a line
    entries = read_journal(path)
    assert [e["event"] for e in entries] == ["dispatch", "done"]
    assert entries[1]["run_uids"] == ["u"]


def test_labcim_station_refuses_bad_options_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABCIM_STATIONS_DIR", str(tmp_path))
    assert main(["station", "sim://pcm-small", "--name", "a b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labcim station: --name: station name 'a b' must be")
    assert len(err.splitlines()) == 1
    registry.save(Station("st1", "tcp://127.0.0.1:60615", pid=os.getpid()))  # alive: this process
    assert main(["station", "sim://pcm-small", "--name", "st1", "--results", str(tmp_path)]) == 2
    assert f"station already running (pid {os.getpid()})" in capsys.readouterr().err

"""Stations end to end: ``labcim station`` processes, queued through bluesky-queueserver-api.

One lab for the whole module: three board stations (simulated chips with their own
seeds) and one SMU station (the simulated Keithley over TCP), each a real RE Manager
with the Redis-protocol server labcim starts for it, on loopback ports.  The tests run
in file order; the last ones SIGKILL a station's manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bluesky_queueserver", reason="needs labcim[stations]")
pytest.importorskip("bluesky_queueserver_api", reason="needs labcim[stations]")
pytest.importorskip("tiled.client", reason="needs labcim[stations]")

from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.comm_base import RequestFailedError
from pause_support import interruptions
from stations_support import (
    LABCIM,
    hdf5_datasets,
    results_server,
    running_stations,
    same_values,
    station_command,
    station_env,
    station_file,
    wait_until,
)

from labcim import open_runs, session
from labcim.campaign.journal import read_journal
from labcim.network.layers import Dense
from labcim.network.loaders import save_npz
from labcim.network.model import Model
from labcim.registry import available_plans
from labcim.stations.client import call_function
from labcim.stations.process import free_port, redis_pid
from labcim.stations.registry import Station
from mock_hw.iv_device import ProbedRRAM
from mock_hw.smu_server import SMUServer
from plans import tdp_program

pytestmark = pytest.mark.slow

CHIP = "sim://pcm-small?cores=2&rows=8&cols=8&seed={seed}"
BOARDS = {"st1": 11, "st2": 12, "st3": 13}
WEIGHTS = np.random.default_rng(5).uniform(-1, 1, (8, 6))
#: A step that runs for seconds on these chips (2 ms per read): long enough to kill.
LONG = {"cores": [0], "reads": 2500}
#: Long enough for several page loads in headless Chromium.
PAGE_STEP = {"cores": [0], "reads": 40000}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    np.save(root / "w.npy", WEIGHTS)
    rng = np.random.default_rng(9)  # a network that fits two 8 x 8 cores, and its inputs
    save_npz(Model([Dense(rng.normal(size=(6, 3)), np.zeros(3))], (6,)), root / "tiny.npz")
    np.save(root / "X.npy", rng.normal(size=(20, 6)))
    chips = {name: CHIP.format(seed=seed) for name, seed in BOARDS.items()}
    with SMUServer(ProbedRRAM(np.random.default_rng(7))) as smu:
        chips["smu1"] = smu.resource
        with running_stations(root, chips) as procs:
            yield root, procs


def api(root: Path, name: str):
    # 30 s per request: a backstop.  With 5 s, a status request went unanswered once in
    # CI's fresh run, with pytest's two workers and the stations' processes sharing 2 CPUs.
    return Station(**station_file(root, name)).api(timeout=30.0)


def run_item(client, item, timeout: float = 120.0) -> dict:
    """Queue ``item``, start the queue, wait until it is in the history; its result."""
    uid = client.item_add(item)["item"]["item_uid"]
    client.queue_start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for done in client.history_get(reload=True)["items"]:
            if done["item_uid"] == uid:
                client.wait_for_idle(timeout=30)
                return done["result"]
        time.sleep(0.2)
    raise AssertionError(f"{item} did not finish in {timeout} s")


def wait_running(root: Path, name: str, events: int, timeout: float = 60.0) -> dict:
    """The station's report once its running run has at least ``events`` events."""
    client = api(root, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = call_function(client, "labcim_status")
        if report["running"] and report["running"]["events"] >= events:
            return report
        time.sleep(0.1)
    raise AssertionError(f"{name}: no run reached {events} events")


#: JSON arguments of every entry-point plan, and the station that runs it.
EVERY_PLAN = {
    "tdp_program": ("st1", {"weights": {"file": "w.npy"}, "max_iterations": 5}),
    "mvm_characterization": ("st1", {"n_vectors": 40, "batch_size": 20, "max_iterations": 3}),
    "conductance_map": ("st1", {"cores": [0, 1], "reads": 2}),
    "adc_characterization": ("st1", {"cores": [0], "repeats": 2, "test_vectors": 40}),
    "retention": ("st1", {"times": [10.0, 100.0], "max_iterations": 3}),
    "network_inference": (
        "st1",
        {"model": "tiny.npz", "X": {"file": "X.npy"}, "times": [3600.0], "max_iterations": 3},
    ),
    "forming": ("smu1", {"target_current": 1.0e-5, "v_stop": 4.0}),
    "iv_sweep": (
        "smu1",
        {"v_set": 1.5, "v_reset": -1.5, "current_limit": 5e-5, "reset_current_limit": 2e-4},
    ),
}


def test_every_entry_point_plan_completes_from_the_queue_with_json_arguments(lab):
    root, _ = lab
    assert set(EVERY_PLAN) == set(available_plans())  # a new plan must be added here
    for name, (station, arguments) in EVERY_PLAN.items():
        client = api(root, station)
        assert name in client.plans_allowed()["plans_allowed"]
        result = run_item(client, BPlan(name, **arguments))
        assert result["exit_status"] == "completed", (name, result["msg"], result["traceback"])
        (uid,) = result["run_uids"]
        run = open_runs(root / "results" / station)[uid]
        assert (run.plan_name, run.exit_status) == (name, "success")
    tdp = next(r for r in open_runs(root / "results" / "st1") if r.plan_name == "tdp_program")
    np.testing.assert_array_equal(tdp.metadata["plan_args"]["weights"], WEIGHTS)


@pytest.mark.parametrize(
    ("arguments", "plan_arguments"),
    [
        ({"tolerance": -1.0}, {"tolerance": -1.0}),
        ({"strategy": "newton"}, {"strategy": "newton"}),
        ({"max_iterations": 0}, {"max_iterations": 0}),
    ],
)
def test_a_bad_argument_is_refused_at_item_add_with_the_plans_own_message(
    lab, arguments, plan_arguments, tmp_path
):
    root, _ = lab
    RE, board = session(CHIP.format(seed=1), tmp_path, quiet=True)
    with pytest.raises(ValueError) as by_the_plan:
        RE(tdp_program(board, WEIGHTS, **plan_arguments))  # the plan's own check
    board.close()
    client = api(root, "st1")
    before = client.status(reload=True)["items_in_queue"]
    with pytest.raises(client.RequestFailedError) as refused:
        client.item_add(BPlan("tdp_program", weights=WEIGHTS.tolist(), **arguments))
    assert str(by_the_plan.value) in str(refused.value)
    assert client.status(reload=True)["items_in_queue"] == before


def test_an_unreadable_file_reference_is_refused_at_item_add(lab):
    root, _ = lab
    client = api(root, "st1")
    with pytest.raises(client.RequestFailedError, match=r"(?s)weights.*cannot load an array"):
        client.item_add(BPlan("tdp_program", weights={"file": "missing.npy"}))


def test_deferred_pause_and_resume_from_the_api_ends_success(lab):
    root, _ = lab
    client = api(root, "st2")
    item = BPlan("tdp_program", weights=WEIGHTS.tolist(), max_iterations=1500, tolerance=0.001)
    uid = client.item_add(item)["item"]["item_uid"]
    client.queue_start()
    wait_running(root, "st2", events=20)
    client.re_pause(option="deferred")
    client.wait_for_condition(lambda s: s["manager_state"] in ("paused", "idle"), timeout=60)
    history = client.history_get(reload=True)["items"]
    assert client.status(reload=True)["manager_state"] == "paused", history[-1]["result"]["msg"]
    client.re_resume()
    client.wait_for_idle(timeout=120)
    (done,) = [i for i in client.history_get(reload=True)["items"] if i["item_uid"] == uid]
    assert done["result"]["exit_status"] == "completed", done["result"]["msg"]
    (run_uid,) = done["result"]["run_uids"]
    run = open_runs(root / "results" / "st2")[run_uid]
    assert run.exit_status == "success"
    assert run.num_events["primary"] == 1501
    assert interruptions(run) == ["pause", "resume"]  # the station's run says it paused


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        script = Path(__file__).parents[1] / "scripts" / "install-browser"
        if subprocess.run([str(script)], capture_output=True).returncode != 0:
            pytest.skip("chromium is missing and scripts/install-browser could not install it")
        found = shutil.which("chromium")
    return found


def _browse(chromium: str, url: str, profile: Path, *extra: str, timeout: float = 90) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=4000",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout


def test_the_status_page_shows_every_station_and_a_progress_that_advances(lab, tmp_path):
    root, _ = lab
    chromium = _chromium()
    port = free_port()
    page = subprocess.Popen(
        [*LABCIM, "stations", "page", "--port", str(port)],
        env=station_env(root / "stations"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert page.stdout.readline().startswith(f"status page on http://127.0.0.1:{port}/")
        client = api(root, "st2")
        run_item(client, BPlan("tdp_program", weights=WEIGHTS.tolist(), max_iterations=5))
        client.item_add(BPlan("conductance_map", **PAGE_STEP))
        client.queue_start()
        wait_running(root, "st2", events=50)
        listing = subprocess.run(
            [*LABCIM, "stations"], env=station_env(root / "stations"), capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        block = listing.split("st2  ")[1].split("\nst3  ")[0]
        assert "executing_queue, 0 item(s) queued" in block
        assert re.search(rf"running conductance_map: \d+/{PAGE_STEP['reads']} events", block)
        url = f"http://127.0.0.1:{port}/"
        seen = []
        for i in range(2):
            dom = _browse(chromium, url, tmp_path / f"profile{i}", "--dump-dom")
            for name in (*BOARDS, "smu1"):
                assert f'id="station-{name}"' in dom
            found = re.search(r'id="progress-st2" data-events="(\d+)"', dom)
            assert found, dom[-3000:]
            seen.append(int(found.group(1)))
            time.sleep(1.0)
        assert 0 < seen[0] < seen[1] < PAGE_STEP["reads"]
        assert 'alt="last figure of st2"' in dom or 'alt="last figure of st1"' in dom
        shot = tmp_path / "status-page.png"
        for attempt in range(2):  # headless chromium's screenshot hung (90 s) three times
            try:  # under load while its DOM dumps of the same page did not: one more try
                _browse(chromium, url, tmp_path / f"profile-shot{attempt}",
                        f"--screenshot={shot}", "--window-size=1500,1000", timeout=45)  # fmt: skip
                break
            except subprocess.TimeoutExpired:
                if attempt:
                    raise
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # Seen enough: end the step now, unless it ended meanwhile (a quiet machine).
        with contextlib.suppress(RequestFailedError):
            client.re_pause(option="immediate")
            client.wait_for_condition(lambda s: s["manager_state"] == "paused", timeout=60)
            client.re_stop()
        client.wait_for_idle(timeout=120)
    finally:
        page.send_signal(signal.SIGINT)
        page.wait(timeout=30)


def _campaign_file(root: Path) -> Path:
    path = root / "night.yaml"
    path.write_text(
        "id: night-1\n"
        f"chip: {CHIP.format(seed=1)}\n"
        "out: night\n"
        "stations: [st1, st2, st3]\n"
        "steps:\n"
        "  - plan: conductance_map\n"
        "    over: {reads: [1, 2, 3, 4, 5, 6, 7, 8]}\n"
        "  - plan: conductance_map\n"
        f"    args: {json.dumps(LONG)}\n"
        "  - plan: tdp_program\n"
        "    args: {weights: {file: w.npy}, max_iterations: 5}\n"
        "    over: {tolerance: [2.0, 3.0, 4.0]}\n"
    )
    return path


def test_a_campaign_over_three_stations_survives_the_sigkill_of_one(lab):
    root, procs = lab
    path = _campaign_file(root)
    campaign = subprocess.Popen(
        [*LABCIM, "-q", "campaign", str(path), "--lost-after", "4"],
        env=station_env(root / "stations"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    journal = root / "night.night-1.journal.jsonl"
    long_key = "02-conductance_map"
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline:
            if journal.exists():
                victim = next(
                    (e["station"] for e in read_journal(journal)
                     if e["event"] == "running" and e["step"] == long_key),
                    None,
                )  # fmt: skip
            time.sleep(0.1)
        assert victim is not None, "the long step never ran"
        report = wait_running(root, victim, events=100)
        assert report["running"]["step_key"] == long_key
        time.sleep(1.0)  # the writer holds events for at most 0.5 s: the 100 are on disk
        manager = station_file(root, victim)["manager_pid"]
        done_before = {e["step"] for e in read_journal(journal) if e["event"] == "done"}
        os.kill(manager, signal.SIGKILL)
        output, _ = campaign.communicate(timeout=300)
    finally:
        campaign.kill()
    assert campaign.returncode == 0, output
    assert "12 succeeded, 0 failed" in output
    assert procs[victim].wait(timeout=60) == 1  # the station noticed and stopped

    events = read_journal(journal)
    assert any(e["event"] == "lost" and e["station"] == victim for e in events)
    assert any(e["event"] == "requeue" and e["step"] == long_key for e in events)
    (finished,) = [e for e in events if e["event"] == "done" and e["step"] == long_key]
    assert finished["station"] != victim
    redone = [e for e in events if e["event"] == "dispatch" and e["step"] in done_before]
    assert len(redone) == len(done_before)  # dispatched once each, never again

    runs = [run for name in BOARDS for run in open_runs(root / "results" / name)]
    ours = [r for r in runs if r.start.get("campaign_id") == "night-1"]
    keys = sorted({r.start["step_key"] for r in ours})
    assert len(keys) == 12
    for key in keys:
        statuses = sorted(r.exit_status for r in ours if r.start["step_key"] == key)
        assert statuses == (["incomplete", "success"] if key == long_key else ["success"]), key
    (killed,) = [r for r in ours if r.exit_status == "incomplete"]
    assert killed.path.parent.name == victim
    assert 100 <= killed.num_events["primary"] < LONG["reads"]
    seeds = {r.start["station_name"]: r.metadata["board_identity"]["sim_chip"] for r in ours}
    assert len(seeds) == 3 and len({json.dumps(s, sort_keys=True) for s in seeds.values()}) == 3

    alive = ",".join(name for name in BOARDS if name != victim)
    resumed = subprocess.run(
        [*LABCIM, "-q", "campaign", str(path), "--resume", "--stations", alive],
        env=station_env(root / "stations"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "0 succeeded, 0 failed, 12 done before" in resumed.stdout  # the victim's count too


def test_every_stations_runs_read_back_through_tiled_equal_their_files(lab, tmp_path):
    root, procs = lab
    for name in BOARDS:  # every station has runs, whichever tests ran before
        if procs[name].poll() is None:
            run_item(api(root, name), BPlan("conductance_map", reads=3))
    alive = next(name for name in BOARDS if procs[name].poll() is None)
    client = api(root, alive)
    client.item_add(BPlan("conductance_map", **LONG))
    client.queue_start()
    live = wait_running(root, alive, events=10)["running"]["uid"]
    files = {(path.parent.name, path.stem): path for path in (root / "results").glob("*/run_*.h5")}
    assert set(BOARDS) <= {station for station, _ in files}
    with results_server(root / "results", root / "tiled.log") as server:
        tree = server["tree"]
        wait_until(
            lambda: all(run in tree[station] for station, run in files), 120, "every run served"
        )
        assert set(BOARDS) <= set(tree)
        compared = 0
        for (station, run), path in sorted(files.items()):
            exported = tmp_path / station / f"{run}.h5"
            exported.parent.mkdir(exist_ok=True)
            tree[station][run].export(str(exported))  # the whole run through tiled
            served, stored = hdf5_datasets(exported), hdf5_datasets(path)
            growing = path.stem.endswith(live[:8])  # being written while tiled read it
            assert set(served) == set(stored), path
            for name, values in stored.items():
                assert same_values(served[name], values, growing), f"{path}:{name}"
                compared += 1
        assert compared >= 10 * len(files)
        live_file = next(p for p in files.values() if p.stem.endswith(live[:8]))
        primary = tree[alive][live_file.stem]["entry"]["primary"]  # the array API, live
        for name in ("seq_num", "data/board_core0_conductance_map"):
            node = primary[name]
            served = node[: node.shape[0]]  # as long as it was when looked up
            stored = hdf5_datasets(live_file)[f"entry/primary/{name}"]
            assert 10 <= len(served) <= len(stored)
            assert same_values(served, stored, growing=True)
    client.wait_for_idle(timeout=120)


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has data within ``timeout`` s (poll: select() refuses a descriptor
    numbered 1024 or more, which a long suite's process reaches)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def test_ctrl_c_on_a_terminal_stops_a_station_and_everything_it_started(tmp_path):
    env = station_env(tmp_path / "stations")
    command = [*LABCIM, "station", CHIP.format(seed=4), "--name", "tty", "--results",
               str(tmp_path / "results"), "--control-addr", f"tcp://127.0.0.1:{free_port()}",
               "--info-addr", f"tcp://127.0.0.1:{free_port()}"]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: the station in a terminal of its own
        os.execvpe(command[0], command, env)
    out = b""
    deadline = time.monotonic() + 120
    while b"ready" not in out and time.monotonic() < deadline:
        if _readable(fd, 0.5):
            out += os.read(fd, 4096)
    entry = station_file(tmp_path, "tty")
    os.write(fd, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground process group
    while True:
        try:
            chunk = os.read(fd, 4096) if _readable(fd, 1.0) else b""
        except OSError:  # the terminal closed: the station exited
            break
        out += chunk
        if time.monotonic() > deadline + 60:
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    assert b"station tty stopped" in out
    assert not (tmp_path / "stations" / "tty.json").exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(entry["manager_pid"], 0)  # the RE Manager's whole process group is gone


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (the container's init may not reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.slow  # two station starts
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the processes")
def test_a_sigkilled_station_leaves_no_manager_nor_redis_and_its_name_starts_again(tmp_path):
    chip = {"doomed": CHIP.format(seed=21)}
    with running_stations(tmp_path, chip) as procs:
        entry = station_file(tmp_path, "doomed")
        manager = entry["manager_pid"]
        cmdline = Path(f"/proc/{manager}/cmdline").read_bytes().split(b"\0")
        redis = cmdline[cmdline.index(b"--redis-addr") + 1].decode()
        valkey = redis_pid(redis)
        group = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == manager]
        assert manager in group and len(group) >= 2  # queueserver's watchdog and manager
        assert not _gone(valkey)
        procs["doomed"].kill()  # SIGKILL: no handler, no cleanup of its own
        procs["doomed"].wait()
        try:
            wait_until(lambda: all(_gone(p) for p in [*group, valkey]), 15, "the orphans to die")
        except AssertionError:
            left = [p for p in [*group, valkey] if not _gone(p)]
            raise AssertionError(f"still running: {[_describe(p) for p in left]}") from None
    # Its registry entry is left behind, naming a dead process: a new station of the
    # same name takes it over.
    assert station_file(tmp_path, "doomed")["pid"] == procs["doomed"].pid
    with running_stations(tmp_path, chip) as procs:
        new = procs["doomed"].pid
        wait_until(lambda: station_file(tmp_path, "doomed")["pid"] == new, 120, "the new entry")
        assert api(tmp_path, "doomed").status()["manager_state"] == "idle"


def _describe(pid: int) -> str:
    """A process's pid, state, parent, group and command line, for a failure message."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
        return f"{pid} {stat.split(')')[1].split()[:3]} {cmd!r}"
    except OSError as exc:
        return f"{pid} {exc}"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.mark.slow  # a station's Redis and RE Manager start, then stop
def test_a_station_whose_board_does_not_answer_says_why_in_one_line(tmp_path):
    done = station_command(tmp_path, "socket://127.0.0.1:9", "--name", "s")
    assert done.returncode == 1
    log = tmp_path / "stations" / "s" / "manager.log"
    assert done.stderr.splitlines() == [
        "station s: the worker environment did not open (its startup code failed): "
        "cannot open socket://127.0.0.1:9: Could not open port socket://127.0.0.1:9: "
        f"[Errno 111] Connection refused (details in {log})"
    ]
    assert "Traceback" in log.read_text()  # the details are kept

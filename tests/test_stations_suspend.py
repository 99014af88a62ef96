"""A station's own ``--suspend``: ``labcim station`` over real TCP to a board, through a
proxy that loses half its bytes while a queued plan runs.

The plan is suspended while the link is bad, the station probes it, and the plan goes
on once the proxy is clean: the item completes, its run ends ``success`` with every
read, and its interruptions say why it waited.
"""

from __future__ import annotations

import pytest

pytest.importorskip("bluesky_queueserver_api", reason="needs labcim[stations]")

from bluesky_queueserver_api import BPlan
from link_support import CorruptingProxy
from pause_support import interruptions
from stations_support import running_stations, station_command, station_file, wait_until

from labcim import open_runs
from labcim.stations.registry import Station
from mock_hw.board_server import BoardHandler, TcpBoardServer
from mock_hw.chip import Chip

READS = 2500
SUSPEND = "{retry_fraction: {above: 0.2, resume_below: 0.05, probe: 0.05, sleep: 0.2}}"


@pytest.mark.slow
@pytest.mark.parametrize("paused", [False, True], ids=["waits", "paused-while-suspended"])
def test_a_station_suspends_a_plan_while_its_link_is_bad_and_finishes_it(tmp_path, paused):
    """``paused``: the operator pauses the suspended plan at once (``re_pause
    immediate``) and resumes it while the link is still bad: it stays suspended."""
    chip = Chip.from_preset("pcm-small", cores=1, rows=8, cols=8, seed=6)
    with TcpBoardServer(BoardHandler(chip)) as server:
        server.start()
        link = CorruptingProxy(server.url, seed=5, flip=0.0, drop=0.0)
        url = f"{link.url}?timeout=0.1&retries=40"
        options = {"sus": ["--suspend", SUSPEND]}
        try:
            with running_stations(tmp_path, {"sus": url}, options=options):
                client = Station(**station_file(tmp_path, "sus")).api(timeout=30.0)
                item = client.item_add(BPlan("conductance_map", cores=[0], reads=READS))
                client.queue_start()
                wait_until(lambda: link.chunks > 1000, 120, "reads through the proxy")
                link.drop = 0.5
                log = tmp_path / "stations" / "sus" / "manager.log"
                wait_until(lambda: "Suspending" in log.read_text(), 60, "a suspension")
                if paused:
                    client.re_pause(option="immediate")
                    state = lambda: client.status(reload=True)["manager_state"]  # noqa: E731
                    wait_until(lambda: state() == "paused", 60, "the pause")
                    client.re_resume()
                    wait_until(lambda: state() == "executing_queue", 60, "the resumption")
                link.drop = 0.0  # the link heals while the plan is suspended
                client.wait_for_idle(timeout=120)
                history = client.history_get(reload=True)["items"]
                (done,) = [i for i in history if i["item_uid"] == item["item"]["item_uid"]]
        finally:
            link.close()
    assert done["result"]["exit_status"] == "completed", done["result"]["msg"]
    assert link.dropped > 5  # the link really was that bad
    (uid,) = done["result"]["run_uids"]
    run = open_runs(tmp_path / "results" / "sus")[uid]
    assert run.exit_status == "success"
    assert run.num_events["primary"] == READS
    reasons = interruptions(run)
    operator = ["pause", "resume"] if paused else []
    assert reasons[1 : 1 + len(operator)] == operator, reasons
    suspensions = [reasons[0], *reasons[1 + len(operator) :]]  # and any later one
    assert all(r.startswith("Signal board_fpga_retry_fraction = ") for r in suspensions)


def test_a_bad_suspend_option_stops_the_station_before_it_starts(tmp_path):
    done = station_command(tmp_path, "sim://pcm-small", "--name", "s", "--suspend", "{mean_rtt: 1}")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "labcim station: --suspend.mean_rtt: expected a mapping such as {above: 0.2}; got 1"
    )
    assert not (tmp_path / "stations").exists() and not (tmp_path / "results").exists()

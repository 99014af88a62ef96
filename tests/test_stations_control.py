"""The station client's requests each get their own reply, with the receive thread slow.

A real 0MQ REP socket answers every request; the client's receive thread is made to
lose the CPU at the moment queueserver's threaded client is racy (after handing over a
reply, before clearing its "waiting" flag), as a busy two-core machine made it do in CI.
"""

import json
import threading
import time

import pytest

pytest.importorskip("bluesky_queueserver_api", reason="needs labcim[stations]")

import zmq  # queueserver's own dependency
from bluesky_queueserver_api.zmq import REManagerAPI

from labcim.stations.registry import Station

RECEIVE_THREAD = "QServer ZMQ API"  # queueserver's name for it


class _LateClear(threading.Event):
    """An event whose ``clear`` from the receive thread comes 0.2 s late."""

    def clear(self) -> None:
        if threading.current_thread().name == RECEIVE_THREAD:
            time.sleep(0.2)
        super().clear()


@pytest.fixture
def manager():
    """A REP socket on loopback answering each request with its own method name."""
    context = zmq.Context()
    socket = context.socket(zmq.REP)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            if socket.poll(50):
                request = json.loads(socket.recv())
                socket.send(json.dumps({"success": True, "msg": request["method"]}).encode())

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{port}"
    stop.set()
    thread.join()
    socket.close(linger=0)
    context.term()


def slowed(api):
    api._client._event_wait_for_msg = _LateClear()
    return api


def test_queueservers_own_client_loses_the_second_reply_when_its_thread_is_slow(manager):
    plain = REManagerAPI(zmq_control_addr=manager, timeout_recv=5.0, request_fail_exceptions=True)
    api = slowed(plain)
    try:
        assert api.queue_start()["msg"] == "queue_start"
        with pytest.raises(api.RequestTimeoutError, match="No received data"):
            api.queue_stop()
    finally:
        api.close()


def test_a_stations_client_gets_every_reply_when_its_thread_is_slow(manager):
    api = slowed(Station(name="st", control=manager).api(timeout=5.0))
    try:
        for method in ("queue_start", "queue_stop", "queue_clear") * 2:
            assert getattr(api, method)()["msg"] == method
    finally:
        api.close()

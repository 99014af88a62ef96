"""The 0MQ control client of a station: bluesky-queueserver-api's ``REManagerAPI``, mended.

queueserver's threaded 0MQ client (``ZMQCommSendThreads``, 0.0.25 and its main branch
as of 2026-12) answers a blocking request twice: the reply callback sets the "reply
received" event, and the receive thread sets it again after it has cleared the
"waiting for a reply" flag.  When that thread is descheduled between the two (two
busy CPUs are enough), the caller has already returned and sent its next request; the
late clear then cancels that request's wait and the late set wakes the caller with no
reply: ``RequestTimeoutError: ... No received data was found`` at once, while the RE
Manager did what was asked (an ``item_add`` that failed this way had added the item).
Here the callback only keeps the reply, so the caller wakes once, after the thread is
done with the request.
"""

from __future__ import annotations

from typing import Any

from bluesky_queueserver import ZMQCommSendThreads
from bluesky_queueserver_api.zmq import REManagerAPI


class _OneWake(ZMQCommSendThreads):
    def _zmq_receive_blocking_cb(self, msg: dict[str, Any], msg_err: str) -> None:
        self._received_data = {"msg": msg, "msg_err": msg_err}  # the thread wakes the caller


class ManagerAPI(REManagerAPI):
    """``bluesky_queueserver_api.zmq.REManagerAPI`` whose blocking requests wake once."""

    def _create_client(  # the arguments and units of REManagerAPI's own (s -> ms)
        self,
        *,
        zmq_control_addr: str,
        zmq_encoding: Any,
        timeout_recv: float,
        timeout_send: float,
        zmq_public_key: str | None,
    ) -> ZMQCommSendThreads:
        return _OneWake(
            zmq_server_address=zmq_control_addr,
            encoding=zmq_encoding,
            timeout_recv=int(timeout_recv * 1000),
            timeout_send=int(timeout_send * 1000),
            raise_exceptions=True,
            server_public_key=zmq_public_key,
        )

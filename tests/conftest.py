"""Suite-wide hygiene: each test's RunEngines give their event loops back.

Every bluesky ``RunEngine`` starts an asyncio loop on a thread of its own and never
closes it (3 descriptors each: epoll and the loop's self-pipe).  One process running
hundreds of plan tests passed 1024 descriptors, where ``select()`` (pty reading, pyserial)
fails with "filedescriptor out of range".  A lab process makes one engine; the suite makes
one per test, so the loops a test started are stopped and closed when it ends.
"""

from __future__ import annotations

import pytest
from bluesky.run_engine import _ensure_event_loop_running

#: bluesky's record of the loops it runs on threads (loop -> thread), weakly keyed.
LOOP_THREADS = _ensure_event_loop_running.loop_to_thread


@pytest.fixture(autouse=True)
def _close_run_engine_loops():
    before = set(LOOP_THREADS)
    yield
    for loop, thread in list(LOOP_THREADS.items()):
        if loop in before or loop.is_closed():
            continue
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

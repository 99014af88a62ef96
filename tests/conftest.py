"""Suite-wide hygiene: each test's RunEngines give their event loops back.

Every bluesky ``RunEngine`` starts an asyncio loop on a thread of its own and never
closes it (3 descriptors each: epoll and the loop's self-pipe).  One process running
hundreds of plan tests passed 1024 descriptors, where ``select()`` (pty reading, pyserial)
fails with "filedescriptor out of range".  A lab process makes one engine; the suite makes
one per test, so the loops a test started are stopped and closed when it ends.

And ``ophyd.sim`` (its ``det``, ``motor``, ``SynSignal``) makes an empty temporary
directory when it is imported and never removes it: one per test process, which over a
developer's runs made hundreds in /tmp.  Each process removes it when its tests end.
"""

from __future__ import annotations

import contextlib
import os
import sys

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


@pytest.fixture(scope="session", autouse=True)
def _remove_ophyd_sim_directory():
    yield
    sim = sys.modules.get("ophyd.sim")
    if sim is not None:
        with contextlib.suppress(OSError):  # not empty: a test wrote there; leave it
            os.rmdir(sim.img.save_path)

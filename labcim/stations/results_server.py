"""Every station's runs through tiled's own server, registered file by file as they appear.

``labcim stations data ROOT`` runs ``tiled serve catalog`` on a catalog of its own (a
SQLite file in a temporary directory, allowed to read ROOT) and keeps that catalog equal
to ROOT through tiled's client, the set-up tiled's documentation gives beyond
``tiled serve directory``: every directory is a container, every HDF5 file a node
(`tiled.client.container.Container.register`), under tiled's own keys
(``results/st1/run_000012_ab12cd34.h5`` is ``st1/run_000012_ab12cd34``).  `sync`
compares a fresh `scan` of ROOT with what it registered, once a second:

- a file not yet served is registered; one that does not read yet (still being copied:
  shorter than its superblock says, `check_complete`) is reported and tried again at
  every pass; nothing is missed for having changed while others were being registered,
  as each pass starts from the directory;
- a run being written needs nothing more: tiled reads an HDF5 node's groups and datasets
  from the file at each request, so a growing run reads as far as its writer got;
  ``TILED_HDF5_SWMR_DEFAULT=1``, here and in the server, opens files in SWMR mode, so a
  run being written (labcim's writer keeps SWMR on) or one whose writer was killed reads;
- a file deleted, or replaced by another (``index.h5``, rebuilt and renamed over), is
  deleted, then registered anew;
- two names with one key (``demo.h5`` and ``demo.h5.runs/``): the directory, or the
  first name, is served and the other reported, where tiled would drop both.

``tiled serve directory --watch`` is not used: in tiled 0.2.20 its watcher re-registers
the whole tree (deleting it first) concurrently with its initial walk when anything
changes during that walk, the two walks delete each other's nodes, and the watcher dies
on the resulting 404 while the server goes on serving a partial tree (docs/stations.md,
"tiled's watcher").  Runs are read only: no TiledWriter, nothing written to ROOT.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import h5py

from labcim.hdf5.layout import FILE_SUFFIXES
from labcim.stations.process import die_with_parent, interrupt
from labcim.stations.registry import StationError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HDF5_MIMETYPE = "application/x-hdf5"
SWMR_SWITCH = "TILED_HDF5_SWMR_DEFAULT"
#: Seconds between two passes of `sync` over ROOT.
RESCAN = 1.0
#: Seconds tiled may take to answer after its start (~15 s on a loaded 2-core machine).
STARTUP_TIMEOUT = 180.0

Key = tuple[str, ...]


@dataclass(frozen=True)
class Item:
    """A directory or HDF5 file below ROOT, as `scan` found it.

    ``identity`` is ``(st_dev, st_ino)``: a file appended to keeps it, a file replaced by
    another (a rename over it) does not.
    """

    path: Path
    is_dir: bool
    identity: tuple[int, int]


def scan(root: Path) -> tuple[dict[Key, Item], list[tuple[Path, Path]]]:
    """What tiled should serve below ``root``: items by key path, and the names left out.

    Hidden names and files other than HDF5 (a run's ``.h5.partial``) are not served.
    Keys are tiled's (`tiled.client.register.strip_suffixes`); of two names with one key
    the directory wins, then the first name.  Returns the items and, for each name left
    out, ``(left out, served)``.
    """
    from tiled.client.register import strip_suffixes

    items: dict[Key, Item] = {}
    left_out: list[tuple[Path, Path]] = []

    def walk(directory: Path, prefix: Key) -> None:
        try:
            with os.scandir(directory) as found:
                entries = sorted(found, key=lambda e: (not e.is_dir(), e.name))
        except OSError:  # gone since it was listed: the next pass sees it
            return
        for entry in entries:
            is_dir = entry.is_dir()
            if entry.name.startswith(".") or not (is_dir or entry.name.endswith(FILE_SUFFIXES)):
                continue
            key = (*prefix, strip_suffixes(entry.name))
            if key in items:
                left_out.append((Path(entry.path), items[key].path))
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue
            items[key] = Item(Path(entry.path), is_dir, (stat.st_dev, stat.st_ino))
            if is_dir:
                walk(Path(entry.path), key)

    walk(root, ())
    return items, left_out


def check_complete(path: Path) -> None:
    """Raise `OSError` if the HDF5 file ``path`` is shorter than its superblock says.

    A file still being copied is such a file, and one tiled must not open: in SWMR mode
    HDF5 retries each unreadable metadata block up to 100 times, which holds this
    process (and tiled's server) for minutes.  A file that fails the check is tried
    again at the next pass, as any file that does not read yet.
    """
    with h5py.File(path, "r", swmr=True) as f:
        needed = f.id.get_filesize()  # the larger of the end in the superblock and the size
    size = path.stat().st_size
    if needed > size:
        raise OSError(f"only {size} of its {needed} bytes are there (still being copied?)")


class Catalog:
    """What this process registered in a tiled catalog, and `sync` to keep it like ROOT.

    Parameters
    ----------
    client
        A tiled client (``tiled.client.from_uri``) with write access to the catalog,
        which nothing else writes.
    report
        Where problems are written (one line each, once per file and message).
    """

    def __init__(self, client: Any, report: TextIO = sys.stderr) -> None:
        self.containers: dict[Key, Any] = {(): client}
        self.served: dict[Key, Item] = {}
        self.report = report
        self._reported: dict[Path, str] = {}

    def sync(self, items: dict[Key, Item], left_out: list[tuple[Path, Path]]) -> None:
        """Make the catalog serve ``items`` (from `scan`): delete, then register."""
        for path, served in left_out:
            self._say(path, f"not served: its key is taken by {served}")
        for key in sorted(self.served, key=len):  # a container takes its contents along
            if key in self.served and items.get(key) != self.served[key]:
                self._delete(key)
        for key, item in sorted(items.items()):
            if key not in self.served and key[:-1] in self.containers:
                self._add(key, item)

    def _add(self, key: Key, item: Item) -> None:
        from tiled.client.utils import ClientError

        parent = self.containers[key[:-1]]
        try:
            if not item.is_dir:
                check_complete(item.path)
            try:
                node = self._new(parent, key[-1], item)
            except ClientError as exc:
                if exc.response.status_code != 409:
                    raise
                # Registered by a request whose answer was lost: replace that node.
                parent.delete_contents(key[-1], recursive=True)
                node = self._new(parent, key[-1], item)
        except Exception as exc:
            if item.path.exists():  # else deleted meanwhile: nothing to say
                self._say(item.path, f"not served yet, tried again each pass: {exc}")
            return
        if item.is_dir:
            self.containers[key] = node
        self.served[key] = item
        if self._reported.pop(item.path, None) is not None:
            self._print(item.path, "served now")

    @staticmethod
    def _new(parent: Any, key: str, item: Item) -> Any:
        if item.is_dir:
            return parent.create_container(key)
        return parent.register(item.path, key=key, mimetype=HDF5_MIMETYPE)

    def _delete(self, key: Key) -> None:
        from tiled.client.utils import ClientError

        try:
            self.containers[key[:-1]].delete_contents(key[-1], recursive=True)
        except ClientError as exc:
            if exc.response.status_code != 404:  # already gone is what was wanted
                self._say(self.served[key].path, f"could not unregister: {exc}")
                return
        for gone in [k for k in self.served if k[: len(key)] == key]:
            del self.served[gone]
            self.containers.pop(gone, None)

    def _say(self, path: Path, message: str) -> None:
        """Report a problem with ``path``, unless it was the last one reported for it."""
        if self._reported.get(path) != message:
            self._reported[path] = message
            self._print(path, message)

    def _print(self, path: Path, message: str) -> None:
        print(f"labcim stations data: {path}: {message}", file=self.report, flush=True)


def tiled_command(
    catalog: Path,
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    public: bool = False,
) -> list[str]:
    """The ``tiled serve catalog`` command line: ``catalog`` (made) is allowed to read ``root``.

    Raises
    ------
    StationError
        If ``root`` is not a directory, tiled is not installed, ``port`` is not one to
        bind, or a server beyond loopback would serve without an API key.
    """
    if not 0 < port < 65536:
        raise StationError(f"--port {port}: expected 1 to 65535")
    if not root.is_dir():
        raise StationError(
            f"{root}: not a directory (give the directory holding the stations' results)"
        )
    tiled = shutil.which("tiled", path=str(Path(sys.executable).parent)) or shutil.which("tiled")
    if tiled is None:
        raise StationError("tiled is not installed: pip install 'labcim[stations]'")
    if public and host not in LOOPBACK:
        raise StationError(
            f"--public with --host {host}: anyone on the network could read the data"
        )
    command = [tiled, "serve", "catalog", str(catalog), "--init", "--read", str(root)]
    command += ["--host", host, "--port", str(port)]
    if public:
        command.append("--public")
    return command


def serve_results(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str = "",
    public: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Serve ``root`` through tiled until SIGINT or SIGTERM; the exit status.

    Nothing starts unless every option is good.  tiled runs in its own session (Ctrl-C
    reaches this process, which stops it), on a catalog in a temporary directory removed
    at the end, and dies with this process; SIGTERM is made to stop this process as
    Ctrl-C does.  The API key is ``api_key`` or a new random one, given to tiled in its
    environment (``TILED_SINGLE_USER_API_KEY``), not on its command line; tiled prints it.

    Raises
    ------
    StationError
        As `tiled_command`, or if ``api_key`` is not letters and digits, or ``port`` is
        taken.
    """
    if api_key and not api_key.isalnum():
        raise StationError(
            "--api-key: tiled takes letters and digits only (e.g. openssl rand -hex 32)"
        )
    root = root.resolve()
    command = tiled_command(Path("catalog.db"), root, host=host, port=port, public=public)
    _check_free(host, port)
    _swmr_reads()
    env = {**os.environ, "TILED_SINGLE_USER_API_KEY": api_key or secrets.token_hex(32)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops it as Ctrl-C does
    with tempfile.TemporaryDirectory(prefix="labcim-tiled-") as catalog_dir:
        server = subprocess.Popen(
            command,
            cwd=catalog_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_tiled_dies_with_us,
        )
        try:
            return _serve(server, root, _url(host, port), env["TILED_SINGLE_USER_API_KEY"], out)
        except KeyboardInterrupt:
            return 0
        finally:
            interrupt(server)


def _swmr_reads() -> None:
    """SWMR reads in tiled's HDF5 adapter, in this process and (inherited) in the server.

    The node's own ``swmr`` parameter is not enough: tiled 0.2.20's
    ``HDF5Adapter.metadata`` opens the file with the default of the switch, which tiled
    reads once, when ``tiled.adapters.hdf5`` is imported.
    """
    os.environ[SWMR_SWITCH] = "1"
    from tiled.adapters import hdf5

    if not hdf5.SWMR_DEFAULT:
        raise StationError(f"tiled's HDF5 adapter was imported before {SWMR_SWITCH}=1 was set")
    # labcim's text fields are variable-length strings, which tiled serves repackaged;
    # it warns about each once per process.
    warnings.filterwarnings("ignore", "The dataset .* is of object type", UserWarning)


def _serve(server: subprocess.Popen, root: Path, url: str, api_key: str, out: TextIO) -> int:
    from tiled.client import from_uri

    error = _wait_for(server, url)
    if error:
        print(f"labcim stations data: {error}", file=sys.stderr)
        return 1
    catalog = Catalog(from_uri(url, api_key=api_key))
    catalog.sync(*scan(root))
    files = sum(not item.is_dir for item in catalog.served.values())
    print(
        f"tiled serves {root} on {url}: {files} files registered, new ones within "
        f"{RESCAN:g} s (Ctrl-C stops it)",
        file=out,
        flush=True,
    )
    while server.poll() is None:
        time.sleep(RESCAN)
        catalog.sync(*scan(root))
    print(f"labcim stations data: tiled exited (status {server.returncode})", file=sys.stderr)
    return 1


def _wait_for(server: subprocess.Popen, url: str) -> str:
    """Wait until tiled answers on ``url``; why it did not ("" once it does)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/", timeout=5):
                return ""
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                return f"tiled did not answer on {url} within {STARTUP_TIMEOUT:g} s"
            time.sleep(0.2)
    return f"tiled exited at start (status {server.returncode}); see its output above"


def _check_free(host: str, port: int) -> None:
    """Refuse a port another server holds (else its answers would pass for tiled's)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        raise StationError(f"--port {port}: cannot bind {host}:{port} ({exc.strerror})") from None


def _url(host: str, port: int) -> str:
    """Where this process reaches a tiled server bound to ``host``."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _tiled_dies_with_us() -> None:
    die_with_parent(signal.SIGTERM)  # a SIGKILLed `labcim stations data` leaves no tiled

"""Every station's runs through tiled's own server: ``tiled serve directory`` on the results.

Stations write directories of run files (``results/NAME/run_000012_ab12cd34.h5``), a
layout tiled's directory adapter serves as it is: key ``NAME`` per station, one key per
run file, the HDF5 groups below (``entry/primary/data/...``).  The server runs with

- the run files, and each station's ``index.h5`` (external links to its runs, for HDF5
  viewers); a run's ``.h5.partial`` file (renamed once its start metadata is
  complete) has no mimetype tiled knows and is skipped;
- ``--watch``: runs that appear later are registered as they appear;
- ``TILED_HDF5_SWMR_DEFAULT=1``: files are opened in SWMR mode, so a run still being
  written (labcim's writer keeps SWMR on) or one whose writer was killed reads fine.

No TiledWriter runs in the stations: tiled only reads what the HDF5 writer wrote.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from labcim.stations.registry import StationError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def tiled_command(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str = "",
    public: bool = False,
) -> list[str]:
    """The ``tiled serve directory`` command line serving ``root``.

    Raises
    ------
    StationError
        If ``root`` is not a directory, tiled is not installed, or a server beyond
        loopback would serve without an API key.
    """
    if not root.is_dir():
        raise StationError(
            f"{root}: not a directory (give the directory holding the stations' results)"
        )
    tiled = shutil.which("tiled", path=str(Path(sys.executable).parent)) or shutil.which("tiled")
    if tiled is None:
        raise StationError("tiled is not installed: pip install 'labcim[stations]'")
    if api_key and not api_key.isalnum():
        raise StationError(
            "--api-key: tiled takes letters and digits only (e.g. openssl rand -hex 32)"
        )
    if public and host not in LOOPBACK:
        raise StationError(
            f"--public with --host {host}: anyone on the network could read the data"
        )
    command = [tiled, "serve", "directory", str(root), "--watch"]
    command += ["--host", host, "--port", str(port)]
    if public:
        command.append("--public")
    elif api_key:
        command += ["--api-key", api_key]
    return command


def serve_results(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str = "",
    public: bool = False,
) -> None:
    """Replace this process by the tiled server of `tiled_command` (SWMR reads on)."""
    command = tiled_command(root, host=host, port=port, api_key=api_key, public=public)
    os.execve(command[0], command, {**os.environ, "TILED_HDF5_SWMR_DEFAULT": "1"})

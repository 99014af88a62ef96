"""The test plan package, made importable and registered without touching the venv.

``tests/plugin_pkg`` registers its plans in its own ``pyproject.toml``.  Rather than
``pip install -e`` it (slow, needs the build backend, and changes the shared venv), the
tests write the ``*.dist-info`` that an install would write, from that same pyproject,
into a temporary directory and put it and the package on ``sys.path`` (and on
``PYTHONPATH`` for subprocesses): `importlib.metadata` then finds the entry points
exactly as for an installed package.  This works in any fresh venv.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"


def write_plugin_metadata(directory: Path) -> list[Path]:
    """Write the plugin's dist-info into ``directory``; return the paths to import from."""
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    dist = directory / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = [
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items())
        for group, entries in project["entry-points"].items()
    ]
    (dist / "entry_points.txt").write_text("\n".join(groups))
    return [directory, PLUGIN_DIR]


@pytest.fixture(name="plugin")
def plugin_fixture(tmp_path_factory, monkeypatch) -> dict[str, str]:
    """Register the test plans in this process; return the environment for subprocesses."""
    paths = write_plugin_metadata(tmp_path_factory.mktemp("plugin"))
    for path in reversed(paths):
        monkeypatch.syspath_prepend(str(path))
    pythonpath = [*map(str, paths), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p)}


def labcim(*args: str) -> list[str]:
    """The command line running ``labcim *args`` with this interpreter."""
    return [sys.executable, "-m", "labcim.cli", *args]

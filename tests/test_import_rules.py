"""The layers' import rules of docs/architecture.md, checked on every import statement.

Every ``import`` and ``from ... import`` of the four packages counts, wherever it is
written (module level, inside a function, under ``TYPE_CHECKING``): a lazy import is
still an arrow between layers.  Relative imports are resolved against the file's package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("drivers", "mock_hw", "labcim", "plans")
TWIN = "labcim.twin"

MOCK_HW_MAY_IMPORT = {"numpy", "drivers.protocol"}
"""What mock_hw/ imports beyond the standard library: numpy and the shared codec."""


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in ``source``, the code of ``module``
    (``from a import b`` gives ``a.b``: it may name a submodule)."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def within(name: str, package: str) -> bool:
    """Whether module ``name`` is ``package`` or inside it."""
    return name == package or name.startswith(package + ".")


def broken_rule(importer: str, imported: str) -> str:
    """The rule of docs/architecture.md that ``importer`` importing ``imported`` breaks
    ("" if none)."""
    top = imported.split(".")[0]
    layer = importer.split(".")[0]
    if top == "benchmarks":
        return "no package imports benchmarks/ (it is not installed)"
    if layer == "drivers" and top in ("labcim", "plans", "mock_hw"):
        return "drivers/ imports no labcim, plans or mock_hw"
    if layer == "mock_hw":
        if top in ("labcim", "plans"):
            return "mock_hw/ imports no labcim or plans"
        if top == "drivers" and not within(imported, "drivers.protocol"):
            return "mock_hw/ imports only drivers.protocol of drivers/"
        if top not in (*PACKAGES, *sys.stdlib_module_names) and top not in MOCK_HW_MAY_IMPORT:
            return f"mock_hw/ imports only the standard library and {sorted(MOCK_HW_MAY_IMPORT)}"
    if layer == "labcim":
        if top == "plans":
            return "labcim/ never imports plans/ (plans are found by entry point)"
        if top == "mock_hw" and not within(importer, TWIN):
            return f"in labcim/ only {TWIN} imports mock_hw"
    if layer == "plans" and (top in ("drivers", "mock_hw") or within(imported, TWIN)):
        return "plans/ talk to hardware through devices only: no drivers, mock_hw or twin"
    return ""


def violations(root: Path) -> list[str]:
    """Every import under ``root``'s packages that breaks a rule, as ``file:line``."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if parts[-1] == "__init__":
                module += ".__init__"  # so that relative imports resolve in the package
            seen = set()
            for line, name in imports(path.read_text(), module):
                rule = broken_rule(module.removesuffix(".__init__"), name)
                if rule and (line, rule) not in seen:  # one line per import statement
                    seen.add((line, rule))
                    out.append(f"{path.relative_to(root)}:{line}: imports {name}: {rule}")
    return out


PENDING: dict[str, str] = {}
"""Files known to break a rule, each with the change that removes it: reported, not hidden."""


def test_every_import_keeps_the_layers():
    broken = [v for v in violations(ROOT) if v.split(":")[0] not in PENDING]
    assert broken == []


def test_each_pending_exception_still_breaks_a_rule():
    """An exception whose file was fixed must be removed from ``PENDING``."""
    files = {v.split(":")[0] for v in violations(ROOT)}
    assert sorted(PENDING) == sorted(files & set(PENDING))


@pytest.mark.parametrize(
    ("package", "path", "code", "rule"),
    [
        ("drivers", "board.py", "import labcim.devices", "drivers/ imports no labcim"),
        ("mock_hw", "chip.py", "from labcim import connect", "mock_hw/ imports no labcim"),
        ("mock_hw", "chip.py", "from drivers.board import BoardClient", "only drivers.protocol"),
        ("mock_hw", "chip.py", "import yaml", "only the standard library"),
        ("mock_hw", "chip.py", "from drivers import board", "only drivers.protocol"),
        ("labcim", "replay.py", "from plans import tdp_program", "never imports plans"),
        ("labcim", "x.py", "def f():\n    from mock_hw.chip import Chip", "only labcim.twin"),
        ("labcim", "cli/bench.py", "import benchmarks", "no package imports benchmarks"),
        ("plans", "stubs.py", "from drivers.board import LinkError", "no drivers"),
        ("plans", "iv.py", "from labcim.twin.sim_url import save_chip", "mock_hw or twin"),
        (
            "plans",
            "stubs.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mock_hw",
            "mock_hw or twin",
        ),
    ],
)
def test_the_check_finds_each_kind_of_broken_rule(tmp_path, package, path, code, rule):
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    file = tmp_path / package / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(code + "\n")
    (found,) = violations(tmp_path)
    assert rule in found and found.startswith(f"{package}/{path}:")


def test_the_twin_and_the_standard_library_are_allowed(tmp_path):
    for name in PACKAGES:
        (tmp_path / name).mkdir()
    (tmp_path / "labcim" / "twin").mkdir()
    (tmp_path / "labcim" / "twin" / "chips.py").write_text("from mock_hw.chip import Chip\n")
    (tmp_path / "mock_hw" / "chip.py").write_text(
        "import json\nimport numpy as np\nfrom drivers.protocol import MAX_CLOCK\n"
        "from . import core\n"
    )
    assert violations(tmp_path) == []


def _loaded(code: str, tops: tuple[str, ...] = ("mock_hw",)) -> list[str]:
    """The modules of the packages ``tops`` loaded by ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {tops!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("code", ["import labcim", "import plans", "import labcim.cli"])
@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_the_framework_and_the_plans_load_no_simulator(code):
    assert _loaded(code) == []


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_the_simulator_is_loaded_when_a_sim_url_is_opened_and_not_for_another():
    real = (
        "import labcim\ntry:\n"
        "    labcim.connect('socket://127.0.0.1:1', timeout=0.1, retries=0)\n"
        "except Exception as exc:\n    assert type(exc).__name__ == 'LinkError', exc"
    )
    assert _loaded(real) == []
    sim = "import labcim\nlabcim.connect('sim://pcm-small?cores=1').close()"
    assert "mock_hw.chip" in _loaded(sim)


HEAVY = ("bluesky", "ophyd", "h5py", "pyvisa")


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_import_labcim_loads_its_names_on_first_use():
    """``import labcim`` loads none of the heavy libraries (PEP 562): ``labcim --help``
    and a simulated board's server start in a tenth of the 0.6-0.9 s they took."""
    assert _loaded("import labcim", HEAVY) == []
    touched = "import labcim\nassert labcim.ChipTestBoard.__name__ == 'ChipTestBoard'"
    assert "ophyd" in {m.split(".")[0] for m in _loaded(touched, HEAVY)}
    import labcim

    assert set(labcim.__all__) <= set(dir(labcim))
    assert labcim.open_runs is __import__("labcim.hdf5").hdf5.open_runs
    with pytest.raises(AttributeError, match="no attribute 'conect'"):
        labcim.conect  # noqa: B018 (the attribute access is the test)


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_the_simulated_board_s_server_loads_no_device_or_run_engine_library():
    """``labcim sim serve`` and ``labcim sim smu`` speak the wire protocol; what they
    import is the simulator and the codec, not ophyd, bluesky or pyvisa."""
    code = "import labcim.twin.serve\nlabcim.twin.serve.board_server"
    assert [m for m in _loaded(code, HEAVY) if m.split(".")[0] != "h5py"] == []


def test_no_code_or_test_reads_a_board_s_simulator_object():
    """``board.sim_chip`` was the way around the wire; the simulator record now comes
    from IDENTIFY, so no attribute of that name is read anywhere (a recorded run's
    ``board_identity["sim_chip"]`` is a key, not an attribute)."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for top in (*PACKAGES, "tests", "benchmarks")
        for path in sorted((ROOT / top).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "sim_chip"
    ]
    assert found == []


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_a_command_that_uses_no_reference_task_does_not_import_scikit_learn(tmp_path):
    """Importing scikit-learn took 2-3 s of every ``labcim`` command (``plans.inference``
    imports ``labcim.network.tasks``); only a reference task's function loads it now."""
    probe = (
        "import json, runpy, sys\n"
        "sys.argv = ['labcim', '-q', 'run', 'conductance_map', '--chip', 'sim://pcm-small',"
        " '--out', 'r.h5', '-p', 'reads=-2']\n"
        "try:\n    runpy.run_module('labcim.cli', run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "print(json.dumps([code, 'plans.inference' in sys.modules,"
        " sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "reads = -2 must be an integer >= 1" in out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [2, True, []]

"""Every Python code block of README.md and docs/*.md runs (issue 14).

The blocks of one file run in order, in one namespace, in a fresh folder, as a reader
would paste them into one session.  A block that needs real hardware starts with the line
``# needs: hardware ...`` (the rest of the line says what) and is reported as skipped
with that reason; every other block must run as written.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
HARDWARE = "# needs: hardware"


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line of the fence, code)`` of every ```python block of ``path``."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


def _cases() -> list:
    cases = []
    for path in DOCS:
        blocks = python_blocks(path)
        name = path.relative_to(ROOT).as_posix()
        if any(not code.startswith(HARDWARE) for _, code in blocks):
            cases.append(pytest.param(path, None, id=name))
        cases += [
            pytest.param(path, line, id=f"{name}:{line}")
            for line, code in blocks
            if code.startswith(HARDWARE)
        ]
    return cases


def test_the_docs_have_python_blocks_and_hardware_blocks_say_what_they_need():
    blocks = [(p, line, code) for p in DOCS for line, code in python_blocks(p)]
    assert len(blocks) >= 10
    for path, line, code in blocks:
        first = code.splitlines()[0] if code else ""
        if first.startswith(HARDWARE):
            assert len(first) > len(HARDWARE) + 3, f"{path.name}:{line}: say what hardware"


@pytest.mark.slow
@pytest.mark.parametrize(("path", "hardware_line"), _cases())
def test_python_blocks_run_in_order(path, hardware_line, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    if hardware_line is not None:
        code = dict(blocks)[hardware_line]
        pytest.skip(f"{path.name}:{hardware_line}: {code.splitlines()[0].lstrip('# ')}")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for line, code in blocks:
        if code.startswith(HARDWARE):
            continue
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception:
            pytest.fail(f"the block at {path.name}:{line} fails:\n{traceback.format_exc()}")
    for value in namespace.values():  # boards and servers the blocks left open
        close = getattr(value, "close", None)
        if callable(close) and type(value).__module__.startswith(("labcim", "mock_hw")):
            close()

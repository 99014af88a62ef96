"""Every Python code block of README.md and docs/*.md runs (issue 14).

The blocks of one file run in order, in one namespace, in a fresh folder, as a reader
would paste them into one session.  A block that needs real hardware starts with the line
``# needs: hardware ...`` (the rest of the line says what) and is reported as skipped
with that reason; every other block must run as written.  Every YAML block that is a
campaign, or a part of one, passes the checks ``labcim campaign`` makes, and every
``labcim`` command of a shell block parses with the command's own options.
"""

from __future__ import annotations

import re
import shlex
import traceback
from pathlib import Path

import numpy as np
import pytest
import yaml

from labcim.campaign import CampaignError, load_campaign
from labcim.campaign.schema import _TOP_FIELDS
from labcim.stations.registry import resolve

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


YAML_FENCE = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
BASE_CAMPAIGN = {
    "chip": "sim://pcm-small",
    "out": "results",
    "steps": [{"plan": "conductance_map"}],
}


def campaign_blocks() -> list:
    """Every ```yaml block that is a campaign file or a part of one (its fields are
    campaign fields): a part is read as written into a campaign of one step."""
    cases = []
    for path in DOCS:
        text = path.read_text()
        for m in YAML_FENCE.finditer(text):
            document = yaml.safe_load(m.group(1))
            if isinstance(document, dict) and set(document) <= set(_TOP_FIELDS):
                line = text.count("\n", 0, m.start()) + 1
                name = f"{path.relative_to(ROOT).as_posix()}:{line}"
                cases.append(pytest.param(document, id=name))
    return cases


def array_files(value) -> list[dict]:
    """The ``{file: ..., key: ...}`` array references in a campaign's values."""
    if isinstance(value, dict):
        if "file" in value:
            return [value]
        return [ref for v in value.values() for ref in array_files(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in array_files(v)]
    return []


def test_the_docs_have_campaign_blocks():
    assert len(campaign_blocks()) >= 6


@pytest.mark.parametrize("document", campaign_blocks())
def test_campaign_blocks_load_as_written(document, tmp_path, monkeypatch):
    """A campaign (or part of one) shown in the docs passes the same checks as
    ``labcim campaign``; the weight files it names are made here, 4 x 4."""
    monkeypatch.chdir(tmp_path)
    for ref in array_files(document.get("steps", [])):
        if "key" in ref:
            np.savez(ref["file"], **{ref["key"]: np.zeros((4, 4))})
        else:
            np.save(ref["file"], np.zeros((4, 4)))
    text = yaml.safe_dump(document if "steps" in document else BASE_CAMPAIGN | document)
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    try:
        load_campaign(path)
    except CampaignError as refused:
        pytest.fail("\n".join(refused.errors))
    if isinstance(document.get("stations"), dict):  # addresses, read as labcim campaign does
        resolve(document["stations"])


SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}


def command_lines(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` of every ``labcim ...`` command in the shell blocks of ``path``
    (fenced ```bash, ```sh, ```console or plain ``` blocks, and indented code blocks
    after a flush-left paragraph), a command being what a shell runs between ``&&``,
    ``;``, ``|`` and ``&``; lines ending in a backslash go on on the next."""
    code: list[tuple[int, str]] = []
    fence, indented, previous, last_text = None, False, "", ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence is not None:
            if fence in SHELL_BLOCKS:
                code.append((number, line))
        elif line.startswith("    ") and (indented or previous == ""):
            indented = indented or not last_text.startswith(" ")
            if indented:
                code.append((number, line))
        elif line.strip():
            indented = False
        if line.strip():
            last_text = line
        previous = line.strip()
    found = []
    joined: list[tuple[int, str]] = []
    for number, line in code:
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
        else:
            joined.append((number, line.strip().removeprefix("$ ")))
    for number, text in joined:
        for part in re.split(r"&&|;|\|\|?|&(?=\s|$)", text):
            if part.strip().startswith("labcim "):
                found.append((number, part.strip()))
    return found


def test_the_docs_have_labcim_commands():
    assert sum(len(command_lines(path)) for path in DOCS) >= 25


def unquoted_globs(command: str) -> str:
    """The characters of ``command`` that a shell would take as a file pattern: ``?``,
    ``*`` and ``[`` outside quotes (zsh, the macOS default, then refuses the command with
    "no matches found"; bash passes it on only while no file matches)."""
    found, quote = "", None
    for char in command:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            break  # a comment
        elif char in "?*[":
            found += char
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_labcim_command_in_the_docs_parses(path, capsys):
    """A command line of the docs pastes into any shell as it is and names subcommands
    and options the command has."""
    from labcim.cli import build_parser

    parser = build_parser()
    for line, command in command_lines(path):
        assert not unquoted_globs(command), f"{path.name}:{line}: quote it: {command}"
        argv = shlex.split(command, comments=True)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            said = capsys.readouterr().err.strip().splitlines()[-1:]
            assert exc.code == 0, f"{path.name}:{line}: {command}: {said}"

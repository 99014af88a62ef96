"""The ``labcim`` console script: help, version, and subcommand wiring."""

import subprocess
import sys

import pytest

import labcim
from labcim.cli import build_parser, main


def test_version_flag_prints_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"labcim {labcim.__version__}"


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: labcim" in capsys.readouterr().out


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, subparser in sub.choices.items():
        text = subparser.format_help()
        assert text.startswith(f"usage: labcim {name}"), name


def test_console_script_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "labcim.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "compute-in-memory" in out.stdout

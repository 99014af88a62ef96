"""Issue 14: typical user mistakes on the command line, made the way a user makes them
(``labcim`` in a subprocess): each is at most three lines on stderr, without a traceback,
naming the argument as it was typed, and leaves nothing on disk."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LABCIM = [sys.executable, "-m", "labcim.cli", "-q"]


def _campaign(name: str, chip: str, args: str = "{}") -> str:
    """A one-step campaign file."""
    steps = f"steps:\n  - plan: conductance_map\n    args: {args}\n"
    return f"id: {name}\nchip: {chip}\nout: night.h5\n{steps}"


CAMPAIGNS = {
    "bad-preset.yaml": _campaign("bad-preset", "sim://pcm-hermez"),
    "bad-type.yaml": _campaign("bad-type", "sim://pcm-small", "{reads: many}"),
    "bad-option.yaml": _campaign("bad-option", "serial:///dev/ttyUSB0?baud=115200"),
}

SMALL = "sim://pcm-small?seed=1"
RUN = f"run conductance_map --chip {SMALL} --out r.h5"

MISTAKES = {
    # name: (the command line after `labcim -q`, what stderr must say)
    "value out of range": (f"{RUN} -p reads=-2", "reads = -2 must be an integer >= 1"),
    "unknown argument": (f"{RUN} -p raeds=2", "raeds: unknown argument of conductance_map"),
    "metadata that labcim sets": (f"{RUN} --md plan_name=x", "--md plan_name: reserved"),
    "unknown core": (f"{RUN} -p cores=[7]", "cores = [7]"),
    "batch does not divide": (
        f"run mvm_characterization --chip {SMALL} --out r.h5 -p n_vectors=500 -p batch_size=300",
        "batch_size = 300 must divide n_vectors = 500",
    ),
    "bad preset": (
        "run conductance_map --chip sim://pcm-hermez --out r.h5",
        "'pcm-hermez' is neither a chip preset (pcm-hermes, pcm-small",
    ),
    "bad query value": (
        "run conductance_map --chip sim://pcm-small?cores=four --out r.h5",
        "cores='four' is not of type int",
    ),
    "core count out of range in the URL": (
        "run conductance_map --chip sim://pcm-small?cores=0 --out r.h5",
        "--chip sim://pcm-small?cores=0: cores = 0 must be an integer in [1, 1024]",
    ),
    "seed out of range in the URL": (
        "run conductance_map --chip sim://pcm-small?seed=-1 --out r.h5",
        "--chip sim://pcm-small?seed=-1: seed = -1 must be a non-negative integer",
    ),
    "negative fault seed": (
        "sim serve --preset pcm-small --faults corrupt=0.01,seed=-1",
        "fault seed = -1 must be a non-negative integer",
    ),
    "misspelt URL scheme": (
        "run conductance_map --chip serail:///dev/ttyUSB0 --out r.h5",
        "unknown URL scheme 'serail'",
    ),
    "bad serial setting": (
        "run conductance_map --chip serial:///dev/ttyUSB0?baud=9600 --out r.h5",
        "unknown setting 'baud'; allowed: baudrate",
    ),
    "port not there": (
        "run conductance_map --chip serial://{tmp}/ttyNONE?baudrate=9600 --out r.h5",
        "cannot connect to serial://{tmp}/ttyNONE?baudrate=9600",
    ),
    "missing weights file": (
        f"run tdp_program --chip {SMALL} --out r.h5 -p 'weights={{{{file: w2.npy}}}}'",
        "-p weights: cannot load an array from {tmp}/w2.npy",
    ),
    "weights file that is not numpy's": (
        f"run tdp_program --chip {SMALL} --out r.h5 -p 'weights={{{{file: w.csv}}}}'",
        "-p weights: cannot load an array from {tmp}/w.csv: not a .npy or .npz file",
    ),
    "file name without {file: ...}": (
        f"run tdp_program --chip {SMALL} --out r.h5 -p weights=w.npy",
        "(an array file is given as {{file: w.npy}})",
    ),
    "weights too large for the cores": (
        f"run tdp_program --chip {SMALL} --out r.h5 -p 'weights={{{{file: w.npy}}}}' -p cores=[0]",
        "weights:",
    ),
    "an alias bomb as a value": (
        f"{RUN} -p 'reads=[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
        "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
        "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e]]'",
        "-p reads: the value is too large: line 1, column 132: with its aliases expanded",
    ),
    "SMU voltage beyond the setup's limit": (
        "run iv_sweep --chip {smu} --out r.h5 -p v_set=12 -p v_reset=-1",
        "v_set = 12.0 V: sweep points must be finite and within the safe limit max_voltage=5.0 V",
    ),
    "SMU current limit beyond the setup's": (
        "run forming --chip {smu} --out r.h5 -p target_current=1e-5 -p v_stop=3 "
        "-p current_limit=0.5",
        "current_limit = 0.5 A: current limit 0.5 A outside",
    ),
    "campaign: bad preset": ("campaign bad-preset.yaml --dry-run", "chip: sim://pcm-hermez"),
    "campaign: bad serial setting": (
        "campaign bad-option.yaml --dry-run",
        "chip: serial:///dev/ttyUSB0?baud=115200: unknown setting 'baud'",
    ),
    "campaign: wrong type": ("campaign bad-type.yaml --dry-run", "reads"),
    "campaign run: bad preset": ("campaign bad-preset.yaml", "chip: sim://pcm-hermez"),
    "show: no such file": ("show nonexistent.h5", "nonexistent.h5"),
}


@pytest.fixture(scope="module")
def smu_resource():
    """``labcim sim smu`` in a subprocess (max_voltage 5 V, max_current 1 mA)."""
    proc = subprocess.Popen([*LABCIM, "sim", "smu"], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _inputs(folder: Path) -> set[str]:
    for name, text in CAMPAIGNS.items():
        (folder / name).write_text(text)
    np.save(folder / "w.npy", np.ones((100, 100)))
    np.savetxt(folder / "w.csv", np.ones((4, 4)), delimiter=",")  # numpy calls it "pickled"
    return {p.name for p in folder.iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_short_message_naming_it_and_leaves_nothing(
    mistake, tmp_path, smu_resource
):
    line, expected = MISTAKES[mistake]
    fill = {"tmp": str(tmp_path), "smu": smu_resource}
    argv = shlex.split(line.format(**fill))
    before = _inputs(tmp_path)
    done = subprocess.run(
        [*LABCIM, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode in (1, 2), (done.returncode, done.stderr)
    assert 1 <= len(lines) <= 3, done.stderr
    assert "Traceback" not in done.stderr and "Run aborted" not in done.stderr
    assert expected.format(**fill) in done.stderr, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == before  # nothing created


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("command", [["sim", "serve"], ["sim", "smu"], ["stations", "page"]])
def test_a_port_out_of_range_is_an_argument_error(command):
    done = subprocess.run(
        [*LABCIM, *command, "--port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2  # argparse's usage, then the one line naming the option
    assert done.stderr.splitlines()[-1].endswith(
        "error: argument --port: '70000' is not a TCP port (0-65535)"
    )


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    argv = ["run", "conductance_map", "--chip", "sim://pcm-small", "--out", "r.h5"]
    done = subprocess.run(
        [*LABCIM, "--debug", *argv, "-p", "cores=[9]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "cores = [9]" in done.stderr


@pytest.mark.slow
def test_a_campaign_log_has_plain_lines_when_not_a_terminal(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "id: log\nchip: sim://pcm-small?seed=3\nout: c.h5\nsteps:\n"
        "  - plan: conductance_map\n    over: {cores: [0, 1]}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "labcim.cli", "campaign", "c.yaml"],  # progress bars on
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout + done.stderr
    assert "[1/2] 01-conductance_map[cores=0] success" in done.stdout

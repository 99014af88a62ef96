"""A lab's package extends labcim by entry points, as it adds plans: a write-verify strategy
and a board URL scheme (tests/plugin_pkg), used by name from ``labcim run`` in a
subprocess; and two packages claiming one name are refused, naming both."""

from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
from campaign_helpers import labcim, plugin_fixture  # noqa: F401  (the fixture "plugin")

from labcim import open_runs
from labcim.characterization import hermes_weights
from labcim.registry import registered


def run(env, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(labcim("-q", *args), capture_output=True, text=True, env=env)
    assert done.returncode == code, done.stderr
    return done


@pytest.mark.slow
def test_a_labs_strategy_programs_by_name(plugin, tmp_path):
    weights = tmp_path / "w.npy"
    np.save(weights, hermes_weights(np.random.default_rng(1), 32, 32))
    out = tmp_path / "r.h5"
    chip = "sim://pcm-small?cores=1&seed=2"
    for strategy in ("tdp", "careful-tdp"):
        run(plugin, "run", "tdp_program", "--chip", chip, "--out", str(out),
            "-p", f"weights={{file: {weights}}}", "-p", f"strategy={strategy}")  # fmt: skip
    tdp, careful = (r.metadata["programming"] for r in open_runs(out))
    assert careful["strategy"] == "careful-tdp"
    assert careful["tolerance"] == pytest.approx(tdp["tolerance"] / 2)
    bad = run(plugin, "run", "tdp_program", "--chip", chip, "--out", str(out),
              "-p", f"weights={{file: {weights}}}", "-p", "strategy=sloppy", code=2)  # fmt: skip
    assert "careful-tdp" in bad.stderr and "sloppy" in bad.stderr


@pytest.mark.slow
def test_a_labs_url_scheme_reaches_the_board(plugin, tmp_path):
    server = subprocess.Popen(
        labcim("sim", "serve", "--chip", "sim://pcm-small?cores=1&seed=2"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = server.stdout.readline().strip().rsplit(":", 1)[1]
        run(plugin, "run", "conductance_map", "--chip", f"lab://{port}", "--out",
            str(tmp_path / "r.h5"))  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        server.stdout.close()
    (recorded,) = open_runs(tmp_path / "r.h5")
    assert recorded.exit_status == "success"
    assert recorded.metadata["board_identity"]["sim_chip"]["spec"]["seed"] == 2
    bad = run(plugin, "run", "conductance_map", "--chip", "lab://x", "--out",
              str(tmp_path / "s.h5"), code=2)  # fmt: skip
    assert (
        bad.stderr.strip() == "labcim run: --chip lab://x: lab://PORT needs a TCP port in 1..65535"
    )
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_without_the_package_its_scheme_is_unknown(tmp_path):
    bad = run(None, "run", "conductance_map", "--chip", "lab://5000", "--out",
              str(tmp_path / "r.h5"), code=2)  # fmt: skip
    assert "unknown URL scheme 'lab'; board URLs: " in bad.stderr
    assert "sim://" in bad.stderr and "socket://" in bad.stderr


def test_one_name_in_two_packages_is_refused(tmp_path, monkeypatch):
    dist = tmp_path / "other-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: other\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[labcim.strategies]\ntdp = other.strategies:Mine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(LookupError, match=(
        r"write-verify strategy 'tdp' is registered twice in 'labcim.strategies': "
        r"(labcim.writeverify.tdp:TDP and other.strategies:Mine|other.strategies:Mine and "
        r"labcim.writeverify.tdp:TDP)"
    )):  # fmt: skip
        registered("labcim.strategies", "write-verify strategy")


@pytest.mark.slow
def test_a_labs_reference_task_runs_by_name_and_a_wrong_one_is_named(plugin, tmp_path):
    out = tmp_path / "r.h5"
    chip = "sim://pcm-small?cores=2&seed=3"
    run(plugin, "run", "network_inference", "--chip", chip, "--out", str(out),
        "-p", "model=lab-tiny", "-p", "times=[60]")  # fmt: skip
    (recorded,) = open_runs(out)
    assert recorded.exit_status == "success"
    assert recorded.metadata["plan_args"]["model"] == "lab-tiny"
    summary = recorded.summary
    assert summary["software_accuracy"] == 100.0  # its labels are its own argmax
    assert summary["t60s_global_agreement"] >= 50.0  # the chip mostly agrees with it
    unknown = run(plugin, "run", "network_inference", "--chip", chip, "--out", str(out),
                  "-p", "model=lab-huge", code=1)  # fmt: skip
    assert "lab-tiny" in unknown.stderr and "digits-mlp" in unknown.stderr
    wrong = run(plugin, "run", "network_inference", "--chip", chip, "--out", str(out),
                "-p", "model=lab-wrong", code=1)  # fmt: skip
    assert "made a dict, not a labcim.network.tasks.Task" in wrong.stderr
    assert len(open_runs(out)) == 1  # neither bad call started a run

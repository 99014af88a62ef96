"""Figures of docs/inference.md: the issue-7 reference tasks through ``network_inference``.

Full stack (RunEngine, devices, wire codec, HDF5 writer) on ``sim://pcm-hermes`` with
chip seed 1 unless ``--seeds`` is given; every figure is read back from the files.
About a minute per seed on one core.

Usage: python scripts/network_figures.py [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import tempfile

from bluesky import RunEngine

from labcim import HDF5Writer, connect, open_runs
from labcim.network.tasks import digits_cnn
from plans.inference import network_inference

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 month": 30 * 86400.0}
BUDGETS = (0.0, 0.02, 0.05, 0.10)


def summary(url: str, plan_factory) -> dict:
    """Run a plan on a fresh board of ``url``; its summary read back from the file."""
    board = connect(url)
    with tempfile.TemporaryDirectory() as out:
        RE = RunEngine({})
        RE.subscribe(HDF5Writer(out))
        RE(plan_factory(board))
        result = open_runs(out)[-1].summary
    board.close()
    return result


def key(t: float, mode: str, figure: str) -> str:
    return f"t{t:.0f}s_{mode}_{figure}"


def mlp_drift(seed: int) -> None:
    s = summary(
        f"sim://pcm-hermes?cores=3&seed={seed}",
        lambda b: network_inference(
            b, "digits-mlp", times=list(TIMES.values()), compensation=["none", "global"]
        ),
    )
    print(f"\n## digits MLP, chip seed {seed}, software {s['software_accuracy']:.2f} %")
    print("| time | none | global |\n| --- | --- | --- |")
    for name, t in TIMES.items():
        row = [s[key(t, m, "accuracy")] for m in ("none", "global")]
        print(f"| {name} | {row[0]:.2f} | {row[1]:.2f} |")


def diabetes(seed: int) -> None:
    month, hour = TIMES["1 month"], TIMES["1 h"]
    print(f"\n## diabetes MLP, chip seed {seed}")
    print("| digital | RMSE 1 h global | vs software 1 h | R^2 1 h | RMSE 1 month none | global |")
    print("| --- | --- | --- | --- | --- | --- |")
    for b in BUDGETS:
        s = summary(
            f"sim://pcm-hermes?cores=2&seed={seed}",
            lambda board, b=b: network_inference(
                board,
                "diabetes",
                times=[hour, month],
                compensation=["none", "global"],
                digital_budget=b,
            ),
        )
        print(
            f"| {100 * b:.0f} % | {s[key(hour, 'global', 'rmse')]:.2f} "
            f"| {s[key(hour, 'global', 'rmse_vs_software')]:.2f} "
            f"| {s[key(hour, 'global', 'r2')]:.3f} | {s[key(month, 'none', 'rmse')]:.2f} "
            f"| {s[key(month, 'global', 'rmse')]:.2f} |"
        )
    print(f"software RMSE {s['software_rmse']:.2f}, R^2 {s['software_r2']:.3f}")


def cnn(seed: int) -> None:
    X_cal = digits_cnn().X_train[:200]
    for tune in (False, True):
        s = summary(
            f"sim://pcm-hermes?cores=3&seed={seed}",
            lambda b, tune=tune: network_inference(b, "digits-cnn", X_cal=X_cal, tune=tune),
        )
        chip = s[key(3600, "global", "accuracy")]
        print(
            f"\n## digits CNN, chip seed {seed}, tune={tune}: software "
            f"{s['software_accuracy']:.2f} %, chip 1 h global {chip:.2f} %"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    for seed in parser.parse_args().seeds:
        mlp_drift(seed)
        diabetes(seed)
        cnn(seed)

"""Figures of docs/inference.md: the reference tasks through ``network_inference``.

Full stack (RunEngine, devices, wire codec, HDF5 writer) on ``sim://pcm-hermes`` with
chip seed 1 unless ``--seeds`` is given; every figure is read back from the files.
``--direct-seeds`` adds the digits-MLP gap table over several chip seeds, with the engine
on the simulated chip directly (``labcim.twin.simchip``).  ``--only`` picks sections.
About two minutes per seed on one core.

Usage: python scripts/network_figures.py [--seeds 1 2 3] [--direct-seeds 1 2 3 4 5 6 7 8]
       [--only mlp diabetes cnn binary regression]
"""

from __future__ import annotations

import argparse
import tempfile

from bluesky import RunEngine

from labcim import HDF5Writer, connect, open_runs
from labcim.network.execution import run_steps
from labcim.network.tasks import digits_cnn, digits_mlp
from labcim.twin.simchip import deploy
from mock_hw.chip import Chip
from plans.inference import network_inference

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 month": 30 * 86400.0}
BUDGETS = (0.0, 0.02, 0.05, 0.10)
SETUPS = {  # regression: (digital budget, replicate)
    "analog": (0.0, False),
    "hybrid 10 %": (0.10, False),
    "replication": (0.0, True),
    "both": (0.10, True),
}


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


def mlp_seeds(seeds: list[int]) -> None:
    """Digits MLP on ``seeds`` with the engine on the chip directly: the 1-h gap to
    software with global compensation and the share of the 1-month drop recovered."""
    task = digits_mlp()
    software = task.score(task.model.forward(task.X_test))
    gaps, recovered = [], []
    for seed in seeds:
        chip = Chip.from_preset("pcm-hermes", cores=3, seed=seed)
        dep, backend, t_prog = deploy(chip, task.model, task.X_train[:300])
        acc = {}
        for t in (TIMES["1 h"], TIMES["1 month"]):
            chip.advance(t_prog + t - chip.time)
            for mode in ("none", "global"):
                run_steps(backend, dep.compensate_drift(mode))
                acc[t, mode] = task.score(run_steps(backend, dep.predict(task.X_test)))
        month = TIMES["1 month"]
        drop = software - acc[month, "none"]
        gaps.append(software - acc[TIMES["1 h"], "global"])
        recovered.append((acc[month, "global"] - acc[month, "none"]) / drop if drop > 0 else 1.0)
    print(f"\n## digits MLP, engine on the chip, seeds {seeds}")
    print(f"| chip seed | {' '.join(map(str, seeds))} |\n| --- | --- |")
    print(f"| gap at 1 h (points) | {' '.join(f'{g:.2f}' for g in gaps)} |")
    print(f"| 1-month drop recovered | {' '.join(f'{r:.2f}' for r in recovered)} |")


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


def regression(seed: int) -> None:
    """The low-noise regressions: analog, hybrid, replication and both, 1 h and 1 month."""
    month, hour = TIMES["1 month"], TIMES["1 h"]
    for task in ("ripple", "friedman"):
        print(f"\n## {task} MLP, chip seed {seed}, 6 cores")
        print(
            "| setup | RMSE 1 h none | 1 h global | / software | RMSE 1 month none "
            "| 1 month global | / software | copies (rows x cores, layer 0) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, (budget, rep) in SETUPS.items():
            s = summary(
                f"sim://pcm-hermes?cores=6&seed={seed}",
                lambda b, task=task, budget=budget, rep=rep: network_inference(
                    b,
                    task,
                    times=[hour, month],
                    compensation=["none", "global"],
                    digital_budget=budget,
                    replicate=rep,
                ),
            )
            sw = s["software_rmse"]
            h, m = s[key(hour, "global", "rmse")], s[key(month, "global", "rmse")]
            copies = f"{s['layer0_row_copies']} x {s['layer0_core_copies']}"
            print(
                f"| {name} | {s[key(hour, 'none', 'rmse')]:.4f} | {h:.4f} | {h / sw:.3f} "
                f"| {s[key(month, 'none', 'rmse')]:.4f} | {m:.4f} | {m / sw:.3f} | {copies} |"
            )
        print(f"software RMSE {sw:.4f}, R^2 {s['software_r2']:.3f}")


def binary(seed: int) -> None:
    s = summary(
        f"sim://pcm-hermes?cores=2&seed={seed}",
        lambda b: network_inference(
            b, "breast-cancer", times=list(TIMES.values()), compensation=["none", "global"]
        ),
    )
    software = s["software_accuracy"]
    print(f"\n## breast cancer, binary MLP, chip seed {seed}: software {software:.2f} %")
    print("| time | none | global |\n| --- | --- | --- |")
    for name, t in TIMES.items():
        row = [s[key(t, m, "accuracy")] for m in ("none", "global")]
        print(f"| {name} | {row[0]:.2f} | {row[1]:.2f} |")


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


SECTIONS = {
    "mlp": mlp_drift,
    "diabetes": diabetes,
    "cnn": cnn,
    "binary": binary,
    "regression": regression,
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--direct-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    for seed in args.seeds:
        for section in args.only:
            SECTIONS[section](seed)
    if args.direct_seeds:
        mlp_seeds(args.direct_seeds)

"""Figures of docs/inference.md: the issue-7 reference tasks on a simulated pcm-hermes chip.

Seeds fixed (chip seed 1), weights programmed through the chip's pulse/read interface
with the test helper of tests/network_support.py.  About a minute on one core.

Usage: python scripts/network_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from network_support import deploy

from labcim.network.hybrid import select_digital, sensitivity
from labcim.network.tasks import diabetes_regressor, digits_cnn, digits_mlp
from labcim.network.tuning import tune
from mock_hw.chip import Chip

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 month": 30 * 86400.0}
MODES = ("none", "global", "column")


def at(chip: Chip, t_prog: float, t: float) -> None:
    chip.advance(max(t_prog + t - chip.time, 0.0))


def mlp_drift() -> None:
    task = digits_mlp()
    sw = task.score(task.model.forward(task.X_test))
    chip = Chip.from_preset("pcm-hermes", seed=1, cores=2)
    dep, be, tp = deploy(chip, task.model, task.X_train[:300])
    print(f"\n## digits MLP 64-64-10, software {sw:.2f} %")
    print("| time | " + " | ".join(MODES) + " |")
    for name, t in TIMES.items():
        at(chip, tp, t)
        accs = []
        for mode in MODES:
            dep.compensate_drift(be, mode)
            accs.append(task.score(dep.predict(be, task.X_test)))
        print(f"| {name} | " + " | ".join(f"{a:.2f}" for a in accs) + " |")


def diabetes() -> None:
    task = diabetes_regressor()
    ysw = task.model.forward(task.X_test)
    sw = task.score(ysw)
    scores = sensitivity(task.model, task.X_train)
    print(f"\n## diabetes MLP 10-32-1, software RMSE {sw:.2f}")
    print("| digital | RMSE 1 h global | dev. from sw 1 h | RMSE 1 month none | 1 month global |")
    for b in (0.0, 0.02, 0.05, 0.10):
        chip = Chip.from_preset("pcm-hermes", seed=1, cores=2)
        dep, be, tp = deploy(
            chip, task.model, task.X_train, digital_masks=select_digital(scores, b)
        )
        at(chip, tp, TIMES["1 h"])
        dep.compensate_drift(be, "global")
        y = dep.predict(be, task.X_test)
        dev = np.sqrt(np.mean((y - ysw) ** 2))
        at(chip, tp, TIMES["1 month"])
        late = []
        for mode in ("none", "global"):
            dep.compensate_drift(be, mode)
            late.append(task.score(dep.predict(be, task.X_test)))
        print(
            f"| {100 * b:.0f} % | {task.score(y):.2f} | {dev:.2f} | {late[0]:.2f} | {late[1]:.2f} |"
        )


def cnn() -> None:
    task = digits_cnn()
    sw = task.score(task.model.forward(task.X_test))
    chip = Chip.from_preset("pcm-hermes", seed=1, cores=3)
    dep, be, tp = deploy(chip, task.model, task.X_train[:200])
    at(chip, tp, TIMES["1 h"])
    dep.compensate_drift(be, "global")
    auto = task.score(dep.predict(be, task.X_test))
    report = tune(dep, be, task.X_train[:200])
    dep.compensate_drift(be, "global")
    tuned = task.score(dep.predict(be, task.X_test))
    print(
        f"\n## digits CNN, software {sw:.2f} %: chip 1 h (global) {auto:.2f} %, tuned {tuned:.2f} %"
    )
    for i, r in report.items():
        print(f"layer {i}: {r}")
    print("utilization", dep.placement.utilization())


if __name__ == "__main__":
    mlp_drift()
    diabetes()
    cnn()

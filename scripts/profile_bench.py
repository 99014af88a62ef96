"""Where the benchmarks' time goes: stage by stage, component by component, pass by pass.

Measures only (issue 18, the plan in docs/performance.md); nothing here is a target.

    python scripts/profile_bench.py stages tdp|mvm|inference [--repeats N]
        CPU and wall seconds of the same work with more and more of the stack: on the
        chip directly, through the wire codec, under the RunEngine (devices, documents,
        plan) without and with the HDF5 writer; medians of interleaved repeats.
    python scripts/profile_bench.py profile tdp|mvm|inference|program [--stage I] [--cores N]
        Samples every thread with py-spy (``pip install py-spy``; a dev tool, not a
        dependency) while one stage runs (default the last: the full stack), and sorts
        the samples by component
        (the innermost labcim, mock_hw, bluesky, ophyd, event-model ... frame of each
        stack) and by function.
    python scripts/profile_bench.py passes [--threads 1]
        The MVM batch of bench_chip line by line (``pip install line_profiler``).
    python scripts/profile_bench.py stubs
        bluesky's per-message and per-document costs: ``bps.rd`` against a raw
        ``Msg("read")``, event-model's validation of an event with and without arrays.
    python scripts/profile_bench.py messages tdp|mvm|inference
        Messages by command and documents of one full-stack run, per event.
    python scripts/profile_bench.py sizes [--repeats N]
        What an event costs as its array grows (256 x 256 to 16 x 256 x 256 float32):
        event-model's validation, and the HDF5 writer's CPU beyond a raw h5py loop
        writing the same frames (no fsync on either side).
    python scripts/profile_bench.py faults [--cores 64]
        The 64-core direct TDP with its user/system CPU seconds and page faults.
    python scripts/profile_bench.py codec [--repeats N]
        CPU ms of a 1 MB conductance read and a 1000 x 256 MVM batch on the chip and
        through the board client, over the link ``sim://`` opens and over a board with
        a real FPGA's 64 KiB frames (what ``labcim sim serve`` advertises).
"""

from __future__ import annotations

import argparse
import collections
import functools
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# benchmarks/ is in the source tree, not installed: import it from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import bench_inference, bench_plans, bench_program
from benchmarks.harness import huge_page_advice, interleave, using_blas_threads

ROWS = 256
RUNS = 5  # runs sampled by ``profile``
SETUP_NAME = "untimed set-up (imports, fresh chip and board, temp dirs)"
WAIT_NAME = "waiting"
# py-spy takes a thread blocked in these for running (it cannot tell inside a container);
# they are waits for another thread or the kernel, not CPU, and are left out of the shares.
WAITS = ("Condition.wait", "Event.wait", "Queue.get", "select (selectors", "_wait_for_tstate")
N_MVM, BATCH_MVM = 10_000, 1000

# Innermost frame wins: a stack is charged to the first of these met from its leaf up.
COMPONENTS = [
    ("jsonschema/", "documents: event-model schema validation"),
    ("event_model/", "documents: event-model"),
    ("labcim/hdf5/", "HDF5 writer"),
    ("h5py/", "HDF5 writer"),
    ("mock_hw/", "simulated chip (mock_hw)"),
    ("drivers/protocol", "wire codec (drivers/protocol)"),
    ("cobs/", "wire codec (drivers/protocol)"),
    ("drivers/board", "board client (drivers/board)"),
    ("labcim/writeverify/", "write-verify strategy"),
    ("labcim/network/", "network engine (labcim/network)"),
    ("labcim/characterization", "figures (characterization, metrics)"),
    ("labcim/metrics", "figures (characterization, metrics)"),
    ("labcim/mapping", "figures (characterization, metrics)"),
    ("labcim/devices/", "ophyd devices (labcim/devices)"),
    ("labcim/progress", "progress bar (labcim/progress)"),
    ("tqdm/", "progress bar (labcim/progress)"),
    ("ophyd/", "ophyd"),
    ("plans/", "plans"),
    ("bluesky/", "RunEngine (bluesky)"),
    ("benchmarks/", "the direct side's own lines (concatenation, scaling)"),
]


def _cpu(trial: Callable[[], float]) -> Callable[[], float]:
    """The trial's CPU seconds (every thread of this process) instead of its wall time."""

    def cpu() -> float:
        t0 = time.process_time()
        trial()
        return time.process_time() - t0

    return cpu


def _stack(plan_factory, writer: bool, url: str | None = None):
    return bench_plans.stack_trial(plan_factory, *([url] if url else []), writer=writer)


def _tdp_plan():
    from labcim.characterization import hermes_weights
    from plans import tdp_program

    w = hermes_weights(np.random.default_rng(1), ROWS, ROWS)
    return lambda b: tdp_program(b, w, cores=[0])


def _mvm_plan():
    from plans import mvm_characterization

    return lambda b: mvm_characterization(
        b, n_vectors=N_MVM, batch_size=BATCH_MVM, seed=bench_plans.SEED, program=False
    )


def _inference_plan():
    from labcim.network.tasks import digits_mlp
    from plans.inference import CALIBRATION_ROWS, network_inference

    task = digits_mlp()
    X = np.resize(task.X_test, (10_800, task.X_test.shape[1]))
    X_cal = task.X_train[:CALIBRATION_ROWS]
    return functools.partial(
        network_inference,
        model=task.model,
        X=X,
        X_cal=X_cal,
        times=[0.0],
        program=False,
        batch_size=bench_inference.BATCH,
    )


_PLANS = {"tdp": _tdp_plan, "mvm": _mvm_plan, "inference": _inference_plan}
_URLS = {"inference": bench_inference.URL}


def _case(name: str, cores: int = 64) -> dict[str, Callable[[], float]]:
    """The stages of one case, from the chip alone to the full stack."""
    from labcim.characterization import hermes_weights
    from plans import tdp_program

    if name == "tdp":
        w = hermes_weights(np.random.default_rng(1), ROWS, ROWS)
        plan = _tdp_plan()
        return {
            "chip directly": bench_plans.direct_program_trial(w),
            "+ wire codec": bench_plans.direct_program_trial(w, wire=True),
            "+ RunEngine, devices, documents, plan": _stack(plan, writer=False),
            "+ HDF5 writer (full stack)": _stack(plan, writer=True),
        }
    if name == "mvm":
        plan = _mvm_plan()
        return {
            "chip directly": bench_plans.direct_mvm_trial(N_MVM, ROWS, BATCH_MVM),
            "+ wire codec": bench_plans.direct_mvm_trial(N_MVM, ROWS, BATCH_MVM, wire=True),
            "+ RunEngine, devices, documents, plan": _stack(plan, writer=False),
            "+ HDF5 writer (full stack)": _stack(plan, writer=True),
        }
    if name == "inference":
        plan = _inference_plan()
        return {
            "chip directly": bench_inference._direct_trial(
                plan.keywords["model"], plan.keywords["X"], plan.keywords["X_cal"]
            ),
            "+ RunEngine, devices, documents, plan": _stack(plan, False, bench_inference.URL),
            "+ HDF5 writer (full stack)": _stack(plan, True, bench_inference.URL),
        }
    if name == "program":
        w = bench_program._weights(cores * ROWS, ROWS, 1)
        return {
            "chip directly": bench_program._direct_trial(cores, w, {}),
            "+ HDF5 writer (full stack)": bench_plans.stack_trial(
                lambda b: tdp_program(b, w), f"sim://pcm-hermes?cores={cores}&seed=0"
            ),
        }
    raise SystemExit(f"unknown case {name!r}; allowed: tdp, mvm, inference, program")


def stages(case: str, repeats: int) -> None:
    """Print CPU and wall seconds per stage (medians, interleaved) and the increments."""
    sides = _case(case)
    cpu = interleave({k: _cpu(v) for k, v in sides.items()}, repeats)
    wall = interleave(sides, repeats)
    first = next(iter(sides))
    print(f"{case}: medians of {repeats} interleaved repeats, BLAS threads {cpu.threads}, ")
    print(f"load {cpu.load[0]:.1f} -> {wall.load[1]:.1f}\n")
    print("| stage | CPU s | + CPU s | CPU / direct | wall s | wall / direct |")
    print("| --- | --- | --- | --- | --- | --- |")
    previous = 0.0
    for k in sides:
        c, w = cpu.median(k), wall.median(k)
        print(
            f"| {k} | {c:.3f} | {c - previous:+.3f} | {c / cpu.median(first):.2f}x "
            f"| {w:.3f} | {w / wall.median(first):.2f}x |"
        )
        previous = c


SETUP = ("_find_and_load", "_case (", "Chip.from_preset", "connect (", "rmtree", "TemporaryDir")
"""Frames (by their start) of untimed set-up: imports, building the case (weights, the
trained model), a fresh chip and board per trial, temp dirs."""


def _c_waits() -> set[str]:
    """py-spy frames of Python lines blocked in a C call (a queue's get, a lock): the
    device worker threads waiting for their next job, as py-spy names them."""
    import inspect

    from labcim.devices.signals import DriverWorker

    out = set()
    for fn, text in ((DriverWorker._serve, "_jobs.get()"), (DriverWorker._watchdog, ".wait(")):
        lines, first = inspect.getsourcelines(fn)
        path = Path(inspect.getsourcefile(fn)).as_posix().split("/labcim/", 1)[-1]
        out |= {
            f"{fn.__qualname__} (labcim/{path}:{first + i})"
            for i, line in enumerate(lines)
            if text in line
        }
    return out


def _component(stack: str, c_waits: set[str]) -> str:
    frames = stack.split(";")
    if any(frame.startswith(SETUP) for frame in frames):
        return SETUP_NAME
    if not stack.strip() or frames[-1] in c_waits or any(w in frames[-1] for w in WAITS):
        return WAIT_NAME
    for frame in reversed(frames):
        for pattern, component in COMPONENTS:
            if pattern in frame:
                return component
    return "other (Python, threads, imports)"


def profile(case: str, stage: int, cores: int, top: int) -> None:
    """Sample stage ``stage`` of ``case`` with py-spy; print shares by component.

    py-spy samples wall time: a thread counts while it runs or waits for a CPU (not
    while it blocks, see `WAITS`), so on a loaded machine the shares, not the sample
    counts, are what to read.
    """
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        cmd = ["py-spy", "record", "-r", "250", "-f", "raw", "-o", str(raw), "--"]
        cmd += [
            sys.executable,
            __file__,
            "_run",
            case,
            "--stage",
            str(stage),
            "--cores",
            str(cores),
        ]
        try:
            subprocess.run(cmd, check=True, capture_output=True)
        except FileNotFoundError:
            raise SystemExit("profile needs py-spy: pip install py-spy") from None
        lines = raw.read_text().splitlines()
    by_component: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    c_waits = _c_waits()
    for line in lines:
        stack, _, n = line.rpartition(" ")
        component = _component(stack, c_waits)
        by_component[component] += int(n)
        if component not in (SETUP_NAME, WAIT_NAME):
            total += int(n)
            by_function[stack.rsplit(";", 1)[-1]] += int(n)
    name = list(_case(case, cores))[stage]
    print(f"{case}, stage {name!r}: {total} samples at 250 Hz over every thread in")
    print(
        f"{_runs(case)} runs; left out: {by_component.pop(SETUP_NAME, 0)} in set-up, "
        f"{by_component.pop(WAIT_NAME, 0)} waiting\n"
    )
    print("| component | share of the samples |\n| --- | --- |")
    for comp, n in by_component.most_common():
        print(f"| {comp} | {100 * n / total:.1f} % |")
    print(f"\ntop {top} functions by own samples (numpy's C time counts to its Python caller):")
    for fn, n in by_function.most_common(top):
        print(f"{100 * n / total:5.1f} %  {fn}")


def _runs(case: str) -> int:
    return 1 if case == "program" else RUNS


def _run_case(case: str, stage: int, cores: int) -> None:
    """Run stage ``stage`` of ``case`` `RUNS` times (what ``profile`` samples)."""
    trial = list(_case(case, cores).values())[stage]
    for _ in range(_runs(case)):
        trial()


def passes(threads: int) -> None:
    """Line-by-line time of the MVM batch of bench_chip (line_profiler)."""
    try:
        from line_profiler import LineProfiler
    except ImportError:
        raise SystemExit("passes needs line_profiler: pip install line_profiler") from None
    from mock_hw.chip import Chip
    from mock_hw.core import Crossbar

    rng = np.random.default_rng(0)
    chip = Chip.from_preset("pcm-hermes", cores=1, seed=0)
    chip.advance(60.0)
    x = rng.integers(-127, 128, (1024, 256)).astype(np.int8)
    x[rng.random(x.shape) < 0.5] = 0
    xf = x.astype(np.float32)
    w = rng.standard_normal((256, 256), dtype=np.float32)
    lp = LineProfiler(Crossbar.mvm, Chip.mvm)
    with using_blas_threads(threads):
        chip.mvm(0, x)  # the weights are cached from here on
        matmul = []
        for _ in range(50):
            lp.runcall(chip.mvm, 0, x)
            matmul.append(_wall(lambda: xf @ w))
    matmul = float(np.median(matmul))
    print(
        f"BLAS threads {threads}; float32 matmul 1024x256x256: {1e3 * matmul:.3f} ms "
        "(median of 50, interleaved)"
    )
    lp.print_stats(output_unit=1e-3, stripzeros=True)
    from mock_hw.slow_noise import _normal_table, standard_normal

    out, table = np.empty((1024, 256), np.float32), _normal_table()
    draws = {
        "mock_hw standard_normal (uint16 integers + take)": lambda: standard_normal(
            rng, out.shape, out=out
        ),
        "random_raw words viewed as uint16 + take": lambda: np.take(
            table, rng.bit_generator.random_raw(out.size // 4).view(np.uint16), out=out.ravel()
        ),
        "rng.standard_normal(dtype=float32)": lambda: rng.standard_normal(
            out.shape, np.float32, out=out
        ),
    }
    t = interleave({k: lambda f=f: _wall(f) for k, f in draws.items()}, 51)
    for k in draws:
        print(f"{1e3 * t.median(k):.3f} ms  {k} (1024 x 256, median of 51)")


def _wall(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stubs() -> None:
    """Per-message cost of bps.rd vs a raw Msg, and of event validation with arrays."""
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from bluesky.utils import Msg
    from event_model import DocumentNames, schema_validators
    from ophyd import Signal

    sig = Signal(name="sig", value=1.0)
    RE = RunEngine({})
    n = 2000

    def with_rd():
        for _ in range(n):
            yield from bps.rd(sig)

    def with_msg():
        for _ in range(n):
            yield Msg("read", sig)

    t = interleave(
        {"rd": lambda: _wall(lambda: RE(with_rd())), "msg": lambda: _wall(lambda: RE(with_msg()))},
        5,
    )
    print(
        f"bps.rd: {1e6 * t.median('rd') / n:.0f} us per call; Msg('read'): "
        f"{1e6 * t.median('msg') / n:.0f} us (medians of 5 interleaved runs of {n})"
    )
    from labcim.connection import connect
    from plans.stubs import trigger_wait

    board = connect(f"sim://{bench_plans.PRESET}?cores=1&seed=0")
    try:

        def triggers():
            for _ in range(200):
                yield from trigger_wait(board.fpga)

        t = interleave(
            {
                "plan": lambda: _wall(lambda: RE(triggers())),
                "client": lambda: _wall(lambda: [board.client.clock() for _ in range(200)]),
            },
            5,
        )
    finally:
        board.close()
    print(
        f"trigger + wait of the board clock under the RunEngine: "
        f"{1e6 * t.median('plan') / 200:.0f} us; the same CLOCK command on the client: "
        f"{1e6 * t.median('client') / 200:.0f} us (medians of 5 interleaved runs of 200)"
    )
    validator = schema_validators[DocumentNames.event]
    for shape in [(), (256, 256), (4, 256, 256), (1000, 256)]:
        value = np.zeros(shape, np.float32) if shape else 1.0
        doc = {
            "uid": "u",
            "time": 0.0,
            "seq_num": 1,
            "descriptor": "d",
            "filled": {},
            "data": {"x": value},
            "timestamps": {"x": 0.0},
        }
        s = min(_wall(lambda doc=doc: validator.validate(doc)) for _ in range(50))
        print(f"event-model validation of an event holding {shape or 'a float'}: {1e3 * s:.3f} ms")
    for case in _PLANS:
        docs = []
        board = connect(_URLS.get(case, f"sim://{bench_plans.PRESET}?cores=1&seed=0"))
        try:
            RE = RunEngine({})
            RE.subscribe(lambda name, doc, docs=docs: docs.append((name, doc)))
            RE(_PLANS[case]()(board))
        finally:
            board.close()
        spent: collections.Counter[str] = collections.Counter()
        for name, doc in docs:
            v = schema_validators[DocumentNames(name)]
            spent[name] += min(_wall(lambda v=v, doc=doc: v.validate(doc)) for _ in range(3))
        print(
            f"{case}: event-model validation of its {len(docs)} documents: "
            + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in spent.most_common())
        )


def messages(case: str) -> None:
    """Messages by command and documents by name of one full-stack run of ``case``."""
    from bluesky import RunEngine

    from labcim.connection import connect

    if case not in _PLANS:
        raise SystemExit(f"unknown case {case!r}; allowed: {', '.join(_PLANS)}")
    factory = _PLANS[case]()
    board = connect(_URLS.get(case, f"sim://{bench_plans.PRESET}?cores=1&seed={bench_plans.SEED}"))
    commands: collections.Counter[str] = collections.Counter()
    documents: collections.Counter[str] = collections.Counter()
    # bluesky.utils.Plan (the @plan decorator of bps.rd, bps.mv, bps.checkpoint ...)
    # formats the whole call stack at every call, to warn about a missing `yield from`.
    import bluesky.utils

    original, stacks = bluesky.utils.traceback.format_stack, []

    def format_stack(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        stacks.append(time.perf_counter() - t0)
        return out

    bluesky.utils.traceback.format_stack = format_stack
    try:
        RE = RunEngine({})
        RE.msg_hook = lambda msg: commands.update([msg.command])
        RE.subscribe(lambda name, doc: documents.update([name]))
        RE(factory(board))
    finally:
        bluesky.utils.traceback.format_stack = original
        board.close()
    events = documents["event"]
    print(
        f"{case}: bluesky.utils.Plan formatted the stack {len(stacks)} times "
        f"({1e3 * sum(stacks):.0f} ms); {sum(commands.values())} messages, "
        f"{sum(documents.values())} documents, {events} events; per event:"
    )
    for command, n in commands.most_common():
        print(f"  {command:20s} {n:6d}  {n / events:7.1f}")


def faults(cores: int) -> None:
    """The direct 64-core TDP: wall, user and system seconds and page faults."""
    w = bench_program._weights(cores * ROWS, ROWS, 1)
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = bench_program._direct_trial(cores, w, {})()
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{cores} cores direct: wall {wall:.1f} s (timed part), over the whole trial: "
        f"user {after.ru_utime - before.ru_utime:.1f} s, "
        f"system {after.ru_stime - before.ru_stime:.1f} s, "
        f"minor page faults {after.ru_minflt - before.ru_minflt:,}, "
        f"peak RSS {after.ru_maxrss / 2**20:.1f} GiB"
    )


def sizes(repeats: int) -> None:
    """Per-event costs by array size: validation, and the writer beyond raw h5py (CPU)."""
    import itertools

    import h5py
    from event_model import DocumentNames, schema_validators

    from benchmarks.bench_hdf5 import _documents
    from labcim.hdf5 import HDF5Writer

    validator = schema_validators[DocumentNames.event]
    print("| frame | MB | validation us | writer - raw h5py, CPU ms per event |")
    print("| --- | --- | --- | --- |")
    for shape, n in [((256, 256), 64), ((4, 256, 256), 32), ((16, 256, 256), 8)]:
        docs = _documents(n, shape)
        event = next(doc for name, doc in docs if name == "event")
        t0 = time.process_time()
        for _ in range(20):
            validator.validate(event)
        check = (time.process_time() - t0) / 20
        rows = [doc["data"]["img"] for name, doc in docs if name == "event"]
        with tempfile.TemporaryDirectory() as tmp:
            counter = itertools.count()

            def ours(docs=docs, tmp=tmp, counter=counter) -> None:
                writer = HDF5Writer(Path(tmp) / f"w{next(counter)}", fsync=False)
                for name, doc in docs:
                    writer(name, doc)

            def raw(rows=rows, shape=shape, tmp=tmp, counter=counter) -> None:
                with h5py.File(Path(tmp) / f"raw{next(counter)}.h5", "w", libver="latest") as f:
                    d = f.create_dataset(
                        "img", (0, *shape), "f4", maxshape=(None, *shape), chunks=(1, *shape)
                    )
                    for i, row in enumerate(rows):
                        d.resize(i + 1, axis=0)
                        d[i] = row

            t = interleave({"writer": _cpu(ours), "raw": _cpu(raw)}, repeats)
            excess = (t.median("writer") - t.median("raw")) / n
        mb = rows[0].nbytes / 2**20
        print(f"| {shape} | {mb:g} | {check * 1e6:.0f} | {excess * 1e3:.2f} |")


def codec(repeats: int) -> None:
    """Print CPU ms per call, chip and clients side by side (medians, interleaved)."""
    from drivers.board import BoardClient, InProcessTransport
    from labcim.twin.sim_url import open_chip
    from mock_hw.board_server import BoardHandler
    from mock_hw.chip import Chip

    chip = Chip.from_preset("pcm-hermes", cores=1, seed=0)
    links = {
        "sim://": BoardClient(open_chip(chip)),
        "64 KiB frames": BoardClient(InProcessTransport(BoardHandler(chip))),
    }
    x = np.random.default_rng(0).integers(-127, 128, (BATCH_MVM, ROWS))
    calls = {
        "read 1 MB": (lambda: chip.read_conductance(0, 0, ROWS), lambda c: c.read_conductance(0)),
        f"MVM {BATCH_MVM} x {ROWS}": (lambda: chip.mvm(0, x), lambda c: c.mvm(0, x)),
    }
    print(f"CPU ms per call, medians of {repeats} interleaved repeats of 10 calls\n")
    print("| call | chip | " + " | ".join(f"client, {k}" for k in links) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in links) + " |")
    for name, (direct, through) in calls.items():
        sides = {"chip": direct} | {k: functools.partial(through, c) for k, c in links.items()}
        cpu = interleave(
            {k: _cpu(lambda f=f: [f() for _ in range(10)]) for k, f in sides.items()}, repeats
        )
        ms = {k: cpu.median(k) * 100 for k in sides}  # 10 calls: s -> ms per call
        extra = " | ".join(f"{ms[k]:.2f} (+{ms[k] - ms['chip']:.2f})" for k in links)
        print(f"| {name} | {ms['chip']:.2f} | {extra} |")
    for name, (_, through) in calls.items():
        frames = {}
        for k, c in links.items():
            before = c.stats.frames_sent
            through(c)
            frames[k] = c.stats.frames_sent - before
        print(f"request frames of one {name}: {frames}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=[
            "stages",
            "profile",
            "passes",
            "stubs",
            "messages",
            "sizes",
            "faults",
            "codec",
            "_run",
        ],
    )
    parser.add_argument("case", nargs="?", default="tdp")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cores", type=int, default=64)
    parser.add_argument("--stage", type=int, default=-1, help="profile: stage index, -1 last")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--huge-pages", action="store_true", help="keep numpy's huge-page advice (as the bench)"
    )
    args = parser.parse_args()
    if args.command == "passes":
        passes(args.threads)
        return
    with using_blas_threads(args.threads), huge_page_advice(args.huge_pages):
        if args.command == "stages":
            stages(args.case, args.repeats)
        elif args.command == "profile":
            profile(args.case, args.stage, args.cores, args.top)
        elif args.command == "_run":
            _run_case(args.case, args.stage, args.cores)
        elif args.command == "stubs":
            stubs()
        elif args.command == "messages":
            messages(args.case)
        elif args.command == "sizes":
            sizes(args.repeats)
        elif args.command == "faults":
            faults(args.cores)
        elif args.command == "codec":
            codec(args.repeats)


if __name__ == "__main__":
    main()

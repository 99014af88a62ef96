"""Characterization plans of the test board: MVM accuracy, conductance maps, retention.

Each plan opens one run, records its steps in ``primary`` and ends with a ``summary``
event.  Random test data follow the HERMES MVM test (Le Gallo et al., Nat. Electron. 6,
680 (2023)): weights uniform in [-1, 1] with 30 % zeros, inputs with 50 % zeros, drawn
from ``numpy.random.default_rng(seed)`` (weights first, then inputs).
"""

import itertools
from collections.abc import Sequence
from typing import Annotated, Any

import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable

from labcim.characterization import (
    BITS_RANGE,
    READ_MODES,
    cell_conductance,
    differential_weights,
    drift_by_level,
    hermes_inputs,
    hermes_weights,
    ideal_outputs,
    quantize_inputs,
)
from labcim.metrics import linear_fit, mvm_error
from labcim.plan_args import (
    EXTRA_METADATA,
    Each,
    Integer,
    NonNegative,
    OneOf,
    Positive,
    Times,
    checks_together,
)
from labcim.progress import EventProgress
from plans.programming import (
    STRATEGY,
    Programming,
    prepare_programming,
    program_cores,
    programming_summary,
    summary_units,
    verify,
)
from plans.stubs import (
    Plan,
    board_clock,
    check_cores,
    checkpoint,
    configure,
    derived,
    event,
    extra_metadata,
    identity,
    measure,
    mvm_outputs,
    record,
    restore_settings,
    settings,
    start_mvm,
    summary_stream,
    value,
    wait_until,
)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is an int within [low, high], else ValueError naming ``name``."""
    return Integer(low, high)(name, value)


MAX_BATCH = 1000
"""Largest default MVM batch (vectors per event): 1000 x 256 outputs is ~2 MB per core."""


def default_batch(n_vectors: int) -> int:
    """The largest divisor of ``n_vectors`` up to `MAX_BATCH`: every event of a run has
    the same batch shape."""
    return next(b for b in range(min(n_vectors, MAX_BATCH), 0, -1) if n_vectors % b == 0)


def _random_programming(
    board: Any,
    ident: dict[str, Any],
    cores: list[int],
    rng: np.random.Generator,
    strategy: str,
    tolerance: float | None,
    max_iterations: int,
) -> Programming:
    """A job programming fresh HERMES-style random weights, one full core each."""
    rows, cols = ident["rows"], ident["cols"]
    weights = np.hstack([hermes_weights(rng, rows, cols) for _ in cores])
    return prepare_programming(
        board, ident, weights, cores, strategy, tolerance, max_iterations, "max", 1.0
    )


def _program_first(board: Any, job: Programming | None) -> Plan:
    """Run ``job`` in stream ``program`` (its verify read in ``verify``), if given.

    Returns the programming summary figures (``program_`` prefix), empty without a job.
    """
    if job is None:
        return {}
    yield from program_cores(job, stream="program")
    maps = yield from verify(board, job)
    return {f"program_{k}": v for k, v in programming_summary(job, maps).items()}


def _mode_key(core: int, mode: str, dac: int, adc: int) -> str:
    """Summary key prefix of one measured combination, e.g. ``core0_4phase_d8_a8_``."""
    return f"core{core}_{mode.replace('-', '')}_d{dac}_a{adc}_"


MODES = Each(OneOf(tuple(READ_MODES)))
"""``read_modes``: read modes (the board may offer fewer)."""
BITS = Each(Integer(*BITS_RANGE))
"""``dac_bits``, ``adc_bits``: bit widths."""


def batch_divides(n_vectors: int = 1000, batch_size: int | None = None, **_: Any) -> None:
    """ValueError unless ``batch_size`` (if given) divides ``n_vectors``: every event of
    a run has the same batch shape."""
    if batch_size is not None and n_vectors % batch_size:
        raise ValueError(
            f"batch_size = {batch_size} must divide n_vectors = {n_vectors} "
            "(every event of a run has the same batch shape)"
        )


@checks_together(batch_divides)
def mvm_characterization(
    board: Readable,
    cores: list[int] | None = None,
    read_modes: Annotated[list[str] | None, MODES] = None,
    dac_bits: Annotated[list[int] | None, BITS] = None,
    adc_bits: Annotated[list[int] | None, BITS] = None,
    n_vectors: Annotated[int, Integer(1)] = 1000,
    batch_size: Annotated[int | None, Integer(1)] = None,
    seed: Annotated[int, Integer(0)] = 0,
    program: bool = True,
    strategy: Annotated[str, STRATEGY] = "tdp",
    tolerance: Annotated[float | None, Positive()] = None,
    max_iterations: Annotated[int, Integer(1)] = 20,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """MVM accuracy per core, read mode and input/output bit width (the HERMES test).

    With ``program`` every core first gets fresh random weights (one full core each,
    programmed with ``strategy``, stream ``program``).  Every core's map is then read
    once (stream ``reference``).  For each combination of ``read_modes`` x ``dac_bits``
    x ``adc_bits`` all cores are configured alike and run the same ``n_vectors`` random
    inputs (the same analog vectors quantized to each ``dac_bits``) in batches; the
    cores' configuration is restored at the end, also after an error.

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    cores : list of int, optional
        Cores to measure; default ``[0]``.
    read_modes : list of str, optional
        ``"4-phase"`` and/or ``"1-phase"``, among those the board offers (its
        ``limits["read_modes"]``, both if it does not say); default the first it offers
        (``["4-phase"]`` on the simulated board, ``["1-phase"]`` on an ArC TWO).
    dac_bits, adc_bits : list of int, optional
        Input / output resolutions (sign included, 2..16); default ``[8]``.
    n_vectors : int
        Input vectors per combination.
    batch_size : int, optional
        Vectors per event (and per board command); must divide ``n_vectors``.  Default:
        the largest divisor of ``n_vectors`` up to `MAX_BATCH` (all of them up to 1000).
    seed : int
        Seed of the weights and inputs.
    program : bool
        Program random weights first; otherwise measure what the cores hold, against
        the read-back reference only.
    strategy, tolerance, max_iterations
        Of the programming (see :func:`plans.programming.tdp_program`).
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    program, verify
        The programming (with ``program``), as in ``tdp_program``.
    reference
        Each core's conductance map (uS) before the MVMs.
    primary
        One event per batch and combination: per core the inputs (DAC codes), ADC
        codes, outputs (uA), its ``read_mode``, ``dac_bits``, ``adc_bits``,
        ``read_voltage``, ``adc_lsb``, and the ideal outputs (uA) on the target
        weights (``<core>_mvm_ideal``, with ``program``) and on the reference map
        (``<core>_mvm_ideal_readback``).
    summary
        Per combination ``coreN_<mode>_d<dac>_a<adc>_``: ``mvm_error`` (%, vs the ideal
        on the reference map: the MVM's own error), ``gain``, ``offset`` (uA),
        ``residual`` (%) of ``linear_fit`` of measured on that ideal, and with
        ``program`` ``mvm_error_target`` (%, vs the target weights: programming error
        and drift included); plus the programming figures (``program_`` prefix).
    """
    ident = yield from identity(board)
    cores = [0] if cores is None else list(cores)
    # A board that cannot do every read mode says which it can (ArC TWO: 1-phase only).
    offered = list(ident["limits"].get("read_modes", READ_MODES))
    read_modes = offered[:1] if read_modes is None else list(read_modes)
    dac_bits = [8] if dac_bits is None else list(dac_bits)
    adc_bits = [8] if adc_bits is None else list(adc_bits)
    devices = check_cores(board, cores)
    for mode in MODES("read_modes", read_modes):
        if mode not in offered:
            raise ValueError(
                f"read_modes: {ident['model']} cannot do the {mode!r} read mode; it offers "
                f"{offered}"
            )
    dac_bits, adc_bits = BITS("dac_bits", dac_bits), BITS("adc_bits", adc_bits)
    n_vectors = _check_int("n_vectors", n_vectors, 1)
    batch_size = (
        default_batch(n_vectors) if batch_size is None else _check_int("batch_size", batch_size, 1)
    )
    batch_divides(n_vectors, batch_size)
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    job = (
        _random_programming(board, ident, cores, rng, strategy, tolerance, max_iterations)
        if program
        else None
    )
    x = hermes_inputs(rng, n_vectors, ident["rows"])
    dpp = ident["devices_per_polarity"]
    targets = {}
    if job is not None:
        targets = {j.tile.core: j.state.targets[0] - j.state.targets[1] for j in job.jobs}
    ideal = {
        c: derived(f"{d.name}_mvm_ideal", units="uA") for c, d in zip(cores, devices, strict=True)
    }
    ideal_rb = {
        c: derived(f"{d.name}_mvm_ideal_readback", units="uA")
        for c, d in zip(cores, devices, strict=True)
    }
    objs: list[Any] = []
    for c, d in zip(cores, devices, strict=True):
        objs += [d.mvm, d.read_mode, d.dac_bits, d.adc_bits, d.read_voltage, d.adc_lsb]
        objs += [ideal[c], ideal_rb[c]] if program else [ideal_rb[c]]
    combos = list(itertools.product(read_modes, dac_bits, adc_bits))
    start = {
        "plan_name": "mvm_characterization",
        "plan_args": {
            "cores": cores,
            "read_modes": read_modes,
            "dac_bits": dac_bits,
            "adc_bits": adc_bits,
            "n_vectors": n_vectors,
            "batch_size": batch_size,
            "seed": seed,
            "program": program,
            "strategy": strategy,
            "tolerance": tolerance,
            "max_iterations": max_iterations,
        },
        "board_identity": ident,
        "num_points": len(combos) * (n_vectors // batch_size),
        **({"programming": job.metadata()} if job is not None else {}),
        **extra_metadata(md),
    }
    saved = {}
    for d in devices:
        saved[d] = yield from settings(d)

    def measure_combo(mode: str, dac: int, adc: int, reference: dict) -> Plan:
        volts = {}
        for c, d in zip(cores, devices, strict=True):
            yield from configure(d, read_mode=mode, dac_bits=dac, adc_bits=adc)
            volts[c] = yield from value(d.read_voltage)  # changes only when configured
        codes = quantize_inputs(x, dac)
        measured: dict[int, list] = {c: [] for c in cores}
        ideals: dict[int, list] = {c: [] for c in cores}
        ideals_rb: dict[int, list] = {c: [] for c in cores}
        for lo in range(0, n_vectors, batch_size):
            batch = codes[lo : lo + batch_size]
            yield from checkpoint()
            for c, d in zip(cores, devices, strict=True):
                # The ideal outputs are computed while the board runs the MVM.
                group = yield from start_mvm(d, batch)
                v = volts[c]
                ideals_rb[c].append(ideal_outputs(batch, reference[c], v, dac))
                values = {ideal_rb[c]: ideals_rb[c][-1]}
                if program:
                    ideals[c].append(ideal_outputs(batch, targets[c], v, dac))
                    values[ideal[c]] = ideals[c][-1]
                measured[c].append((yield from mvm_outputs(d, group)))
                record(values)
            yield from event(objs)
        figures = {}
        for c in cores:
            y = np.concatenate(measured[c])
            y_rb = np.concatenate(ideals_rb[c])
            key = _mode_key(c, mode, dac, adc)
            figures[key + "mvm_error"] = mvm_error(y, y_rb)
            figures.update({key + k: v for k, v in linear_fit(y, y_rb).items()})
            if program:
                figures[key + "mvm_error_target"] = mvm_error(y, np.concatenate(ideals[c]))
        return figures

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        summary = yield from _program_first(board, job)
        yield from checkpoint()
        yield from measure([d.conductance for d in devices])
        reference = {}
        for c, d in zip(cores, devices, strict=True):
            reference[c] = differential_weights((yield from value(d.conductance.map)), dpp)
        yield from event([d.conductance for d in devices], "reference")
        for mode, dac, adc in combos:
            summary.update((yield from measure_combo(mode, dac, adc, reference)))
        units = {k: "%" for k in summary if k.endswith(("mvm_error", "residual", "_target"))}
        units.update({k: "uA" for k in summary if k.endswith("offset")})
        units.update(summary_units({k: v for k, v in summary.items() if k.startswith("program")}))
        yield from summary_stream(summary, units)
        return summary

    return (yield from bpp.finalize_wrapper(run(), restore_settings(saved)))


def conductance_map(
    board: Readable,
    cores: list[int] | None = None,
    reads: Annotated[int, Integer(1)] = 1,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Read every device of the given cores, ``reads`` times.

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    cores : list of int, optional
        Cores to read; default all.
    reads : int
        Reads of each core (one event each, all cores per event).
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    primary
        Per read: the board clock (s) and each core's map (uS) and mean.
    summary
        Per core ``coreN_``: ``mean``, ``std``, ``min``, ``max`` (uS) of the last map and
        ``read_noise`` (uS, rms difference of consecutive reads / sqrt 2; 0 for one read).
    """
    ident = yield from identity(board)
    cores = list(range(ident["n_cores"])) if cores is None else list(cores)
    devices = check_cores(board, cores)
    reads = _check_int("reads", reads, 1)
    start = {
        "plan_name": "conductance_map",
        "plan_args": {"cores": cores, "reads": reads},
        "board_identity": ident,
        "num_points": reads,
        **extra_metadata(md),
    }

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        maps: dict[int, list[np.ndarray]] = {c: [] for c in cores}
        for _ in range(reads):
            yield from checkpoint()
            yield from measure([board.fpga, *(d.conductance for d in devices)])
            for c, d in zip(cores, devices, strict=True):
                maps[c].append((yield from value(d.conductance.map)))
            yield from event([board.fpga, *(d.conductance for d in devices)])
        summary = {}
        for c in cores:
            summary.update({f"core{c}_{k}": v for k, v in map_figures(maps[c]).items()})
        yield from summary_stream(summary, {k: "uS" for k in summary})
        return summary

    return (yield from run())


def map_figures(maps: Sequence[np.ndarray]) -> dict[str, float]:
    """``mean``, ``std``, ``min``, ``max`` (uS) of the last map and ``read_noise`` (uS)."""
    g = np.asarray(maps[-1], np.float64)
    if len(maps) > 1:
        diffs = np.diff(np.asarray(maps, np.float64), axis=0)
        noise = float(np.sqrt(np.mean(diffs * diffs) / 2))
    else:
        noise = 0.0
    return {
        "mean": float(g.mean()),
        "std": float(g.std()),
        "min": float(g.min()),
        "max": float(g.max()),
        "read_noise": noise,
    }


RETENTION_TIMES = Times(count=2, positive=True, strictly=True)
"""``times`` of `retention`: s after programming, at least two (a fit needs them)."""


def retention(
    board: Readable,
    times: Annotated[list[float], RETENTION_TIMES],
    cores: list[int] | None = None,
    program: bool = True,
    seed: Annotated[int, Integer(0)] = 0,
    strategy: Annotated[str, STRATEGY] = "tdp",
    tolerance: Annotated[float | None, Positive()] = None,
    max_iterations: Annotated[int, Integer(1)] = 20,
    n_levels: Annotated[int, Integer(1)] = 4,
    min_conductance: Annotated[float, NonNegative()] = 1.0,
    t0: Annotated[float, NonNegative()] = 0.0,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Conductance drift after programming, read at ``times`` s after it ends.

    On a simulated board the board clock is advanced to each time; on real hardware the
    plan waits until then (``board.fpga.wait_until``).  Each device's drift exponent is
    fitted over the reads (``log G = a - nu log(t + t0)``,
    :func:`labcim.metrics.drift_exponent`) and summarized per conductance level
    (:func:`labcim.characterization.drift_by_level`); so is each cell's, on the summed
    conductance of the devices of one polarity of a unit cell (the quantity the HERMES
    two-device fits describe).

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    times : list of float
        Read times (s) after the end of programming, increasing, > 0; at least two.
    cores : list of int, optional
        Cores; default ``[0]``.
    program : bool
        Program fresh random weights first (one full core each); otherwise times count
        from the start of the plan.
    seed : int
        Seed of the random weights.
    strategy, tolerance, max_iterations
        Of the programming (see :func:`plans.programming.tdp_program`).
    n_levels : int
        Conductance levels (bins of equal population of the first read).
    min_conductance : float
        Devices reading less at the first time (uS) are left out of the fit.
    t0 : float
        Drift onset (s) added to the times in the fit (HERMES model: 200-300 s); 0
        fits a pure power law, fine for times much longer than the onset.
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    program, verify
        The programming (with ``program``).
    primary
        Per time: ``elapsed`` (s since programming, from the board clock), the board
        clock and link, each core's map (uS).
    summary
        Per core ``coreN_``: ``nu`` (n_levels: median fitted exponent per level),
        ``nu_median`` (over all fitted devices), ``level`` (uS, median first read per
        level), ``level_edges`` (uS), ``count``, ``ratio`` (times x levels: median of
        G(t) / G(first time)); the same per cell as ``coreN_cell_nu``,
        ``coreN_cell_nu_median``, ``coreN_cell_level``, ``coreN_cell_level_edges``,
        ``coreN_cell_count``, ``coreN_cell_ratio`` (levels of the cells' summed
        conductance; with one device per polarity they equal the device figures).
    """
    ident = yield from identity(board)
    cores = [0] if cores is None else list(cores)
    devices = check_cores(board, cores)
    t = np.asarray(RETENTION_TIMES("times", times), np.float64)
    n_levels = _check_int("n_levels", n_levels, 1)
    for name, given in (("min_conductance", min_conductance), ("t0", t0)):
        NonNegative()(name, given)
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    job = (
        _random_programming(board, ident, cores, rng, strategy, tolerance, max_iterations)
        if program
        else None
    )
    elapsed = derived("elapsed", 0.0, "s", kind="hinted")
    start = {
        "plan_name": "retention",
        "plan_args": {
            "times": t.tolist(),
            "cores": cores,
            "program": program,
            "seed": seed,
            "strategy": strategy,
            "tolerance": tolerance,
            "max_iterations": max_iterations,
            "n_levels": n_levels,
            "min_conductance": min_conductance,
            "t0": t0,
        },
        "board_identity": ident,
        "num_points": len(t),
        "hints": {"dimensions": [(["elapsed"], "primary")]},
        **({"programming": job.metadata()} if job is not None else {}),
        **extra_metadata(md),
    }

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        summary = yield from _program_first(board, job)
        yield from checkpoint()
        origin = yield from board_clock(board)
        maps: dict[int, list[np.ndarray]] = {c: [] for c in cores}
        when = []
        for ti in t:
            yield from checkpoint()
            # An absolute time: a replayed wait does not move the clock again.
            clock = yield from wait_until(board, origin + ti)
            when.append(clock - origin)
            record({elapsed: when[-1]})
            yield from measure([d.conductance for d in devices])
            for c, d in zip(cores, devices, strict=True):
                maps[c].append((yield from value(d.conductance.map)))
            yield from event([elapsed, board.fpga, *(d.conductance for d in devices)])
        dpp = ident["devices_per_polarity"]
        for c in cores:
            cells = [cell_conductance(m, dpp) for m in maps[c]]
            for p, g in ((f"core{c}_", maps[c]), (f"core{c}_cell_", cells)):
                fit = drift_by_level(np.array(when) + t0, g, n_levels, min_conductance)
                summary.update(
                    {
                        p + "nu": fit["nu"],
                        p + "nu_median": float(np.nanmedian(fit["nu_device"])),
                        p + "level": fit["level"],
                        p + "level_edges": fit["edges"],
                        p + "count": fit["count"],
                        p + "ratio": fit["ratio"],
                    }
                )
        units = summary_units({k: v for k, v in summary.items() if k.startswith("program")})
        units.update({k: "uS" for k in summary if k.endswith(("level", "level_edges"))})
        yield from summary_stream(summary, units)
        return summary

    return (yield from run())

"""``adc_characterization``: each ADC column's transfer curve, measured through the board.

A column's ADC is swept over its whole range with inputs whose ideal output is known
from the read-back conductances: the first ``n`` rows of every column hold the same
calibration conductance (programmed first, or whatever the core holds), and the same
DAC code ``c`` on those rows, for every code from ``-L`` to ``L``, drives each column to
``V_read (c / L) sum_i W_ij``.  ``n`` is chosen from the read-back so that the full code
overdrives the ADC a little: both ends of every column's range are reached.  Each
column's codes against that ideal give its integral nonlinearity
(:func:`labcim.adc_transfer.fit_transfer`); gain and offset errors of the column (and of
the read-back) do not enter it.  A held-out HERMES-style MVM test then shows what the
correction (:func:`labcim.adc_transfer.correct_codes`) does to the MVM error, with its
inputs scaled so that the outputs use the ADC's range as an auto-ranged layer's do.
"""

from typing import Annotated, Any

import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable

from labcim.adc_transfer import correct_codes, fit_transfer
from labcim.characterization import (
    READ_MODES,
    differential_weights,
    hermes_inputs,
    ideal_outputs,
    quantize_inputs,
)
from labcim.metrics import mvm_error
from labcim.network.execution import fit_affine
from labcim.plan_args import EXTRA_METADATA, Integer
from labcim.progress import EventProgress
from plans.programming import (
    STRATEGY,
    prepare_programming,
    program_cores,
    programming_summary,
    verify,
)
from plans.stubs import (
    Plan,
    check_cores,
    checkpoint,
    configure,
    derived,
    event,
    extra_metadata,
    identity,
    measure,
    record,
    restore_settings,
    run_mvm,
    settings,
    summary_stream,
    value,
)

OVERDRIVE = 1.08
"""The full code drives the median column to this multiple of the ADC full scale."""


def rows_to_drive(weights: np.ndarray, full_scale: float, v_read: float) -> int:
    """Fewest first rows ``n`` whose full code drives the median column of ``weights``
    (uS, (rows, cols)) to :data:`OVERDRIVE` times ``full_scale`` (uA) at ``v_read`` (V).

    Raises
    ------
    ValueError
        If even all rows cannot (the core holds too little conductance of one sign).
    """
    reach = v_read * np.median(np.cumsum(weights, axis=0), axis=1)
    enough = np.flatnonzero(reach >= OVERDRIVE * full_scale)
    if not enough.size:
        raise ValueError(
            f"the core's columns reach {reach.max():.3g} uA at most, below the ADC full "
            f"scale {full_scale:.3g} uA: program the calibration pattern (program=True)"
        )
    return int(enough[0]) + 1


def sweep_inputs(rows: int, n: int, top: int, repeats: int) -> np.ndarray:
    """Input codes (int16, (repeats * (2 top + 1), rows)): every code -top..top on the
    first ``n`` rows, the other rows 0, repeated ``repeats`` times."""
    levels = np.arange(-top, top + 1, dtype=np.int16)
    x = np.zeros((levels.size, rows), np.int16)
    x[:, :n] = levels[:, None]
    return np.tile(x, (repeats, 1))


TEST_RMS = 0.25
"""rms output of the held-out test vectors, as a fraction of the ADC full scale (4 rms
to saturation: the test sees the ADC's transfer, not its clipping)."""


def test_codes(
    x: np.ndarray, weights: np.ndarray, dac_bits: int, v_read: float, full_scale: float
) -> np.ndarray:
    """DAC codes of test inputs ``x`` (in [-1, 1]) scaled so that their ideal outputs on
    ``weights`` (uS) have an rms of :data:`TEST_RMS` times ``full_scale`` (uA)."""
    top = 2 ** (dac_bits - 1) - 1
    rms = float(
        np.sqrt(
            np.mean(ideal_outputs(quantize_inputs(x, dac_bits), weights, v_read, dac_bits) ** 2)
        )
    )
    scale = min(TEST_RMS * full_scale / max(rms, 1e-300), 1.0)
    return np.clip(np.rint(x * (top * scale)), -top, top).astype(np.int16)


def adc_characterization(
    board: Readable,
    cores: list[int] | None = None,
    program: bool = True,
    repeats: Annotated[int, Integer(1)] = 8,
    test_vectors: Annotated[int, Integer(1)] = 1000,
    seed: Annotated[int, Integer(0)] = 0,
    strategy: Annotated[str, STRATEGY] = "tdp",
    max_iterations: Annotated[int, Integer(1)] = 20,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Measure every ADC column's transfer curve and fit its INL (through the board).

    With ``program`` every cell's positive polarity is programmed to the full-scale
    conductance (``g_cell_max`` of ``strategy``), the negative one to zero (stream
    ``program``, verify read in ``verify``).  The maps are read (stream ``reference``),
    each core is set to 4-phase (the 1-phase polarity error is not the ADC's; a board
    that offers only 1-phase, e.g. an ArC TWO, is measured in it), and for every core
    the sweep of :func:`sweep_inputs` runs, one event per repeat.  Then
    ``test_vectors`` random HERMES-style inputs (stream ``test``) measure the MVM error
    with the raw codes and with the corrected ones.  The cores' settings are restored at
    the end, also after an error.

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    cores : list of int, optional
        Cores to characterize; default ``[0]``.
    program : bool
        Program the calibration pattern first; otherwise the first rows of each column
        must already hold a conductance of one sign (the plan drives the rows' sum).
    repeats : int
        Sweeps per core (averages the read and ADC noise).
    test_vectors : int
        Random vectors (HERMES test: uniform, 50 % zeros) of the held-out MVM test, scaled
        by :func:`test_codes` (weights: the core's read-back).
    seed : int
        Seed of the test vectors.
    strategy, max_iterations
        Of the programming (see :func:`plans.programming.tdp_program`).
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    program, verify
        The calibration pattern's programming (with ``program``).
    reference
        Each core's conductance map (uS).
    primary
        One event per repeat: per core its ``mvm`` (inputs, codes, outputs) and
        ``<core>_adc_ideal`` (uA: the ideal output on the reference map).
    test
        One event: per core the test vectors' MVM and ``<core>_test_ideal`` (uA).
    summary
        Per core ``coreN_``: ``inl_even``, ``inl_odd`` (cols, fractions of full scale: the
        fitted INL, :mod:`labcim.adc_transfer`), ``inl_max`` (cols, LSB), ``inl_max_median``
        (LSB), ``fit_residual`` (LSB, median over columns), ``rows_driven``,
        ``adc_levels`` (the largest code, ``2**(adc_bits - 1) - 1``),
        ``mvm_error`` and ``mvm_error_corrected`` (%, test vectors against the ideal on
        the reference map, raw and corrected codes; both after each column's
        least-squares gain and offset, which the inference engine calibrates anyway),
        plus the programming figures (``program_`` prefix).
    """
    ident = yield from identity(board)
    cores = [0] if cores is None else list(cores)
    devices = check_cores(board, cores)
    repeats = Integer(1)("repeats", repeats)
    test_vectors = Integer(1)("test_vectors", test_vectors)
    rng = np.random.default_rng(Integer(0)("seed", seed))
    rows, cols, dpp = ident["rows"], ident["cols"], ident["devices_per_polarity"]
    # 4-phase where the board offers it (the 1-phase polarity error is not the ADC's); a
    # board with one read mode (ArC TWO: 1-phase, its limits["read_modes"]) uses that.
    offered = list(ident["limits"].get("read_modes", READ_MODES))
    read_mode = "4-phase" if "4-phase" in offered else offered[0]
    job = None
    if program:
        ones = np.ones((rows, cols * len(cores)))
        job = prepare_programming(
            board, ident, ones, cores, strategy, None, max_iterations, "max", 1.0
        )
    x_test = hermes_inputs(rng, test_vectors, rows)
    ideal = {
        c: derived(f"{d.name}_adc_ideal", units="uA") for c, d in zip(cores, devices, strict=True)
    }
    test_ideal = {
        c: derived(f"{d.name}_test_ideal", units="uA") for c, d in zip(cores, devices, strict=True)
    }
    start = {
        "plan_name": "adc_characterization",
        "plan_args": {
            "cores": cores,
            "program": program,
            "repeats": repeats,
            "test_vectors": test_vectors,
            "seed": seed,
            "strategy": strategy,
            "max_iterations": max_iterations,
        },
        "board_identity": ident,
        "num_points": len(cores) * repeats,
        **({"programming": job.metadata()} if job is not None else {}),
        **extra_metadata(md),
    }
    saved = {}
    for d in devices:
        saved[d] = yield from settings(d)

    def sweep_and_test(weights: dict[int, np.ndarray]) -> Plan:
        """Every repeat on every core (one event each), the fits, then the test."""
        setup = {}
        for c, d in zip(cores, devices, strict=True):
            yield from configure(d, read_mode=read_mode)
            cfg = yield from settings(d)
            lsb = yield from value(d.adc_lsb)
            top = 2 ** (int(cfg["adc_bits"]) - 1) - 1
            dac, v_read = int(cfg["dac_bits"]), float(cfg["read_voltage"])
            n = rows_to_drive(weights[c], lsb * top, v_read)
            setup[c] = (lsb, top, dac, v_read, n, sweep_inputs(rows, n, 2 ** (dac - 1) - 1, 1))
        measured: dict[int, list] = {c: [] for c in cores}
        ideals: dict[int, list] = {c: [] for c in cores}
        for _ in range(repeats):
            yield from checkpoint()
            for c, d in zip(cores, devices, strict=True):
                _, _, dac, v_read, _, x = setup[c]
                yield from run_mvm(d, x)
                measured[c].append((yield from value(d.mvm.codes)))
                ideals[c].append(ideal_outputs(x, weights[c], v_read, dac))
                record({ideal[c]: ideals[c][-1]})
            yield from event(
                [obj for c, d in zip(cores, devices, strict=True) for obj in (d.mvm, ideal[c])]
            )
        figures, tests = {}, {}
        yield from checkpoint()
        for c, d in zip(cores, devices, strict=True):
            lsb, top, dac, v_read, n, _ = setup[c]
            fit = fit_transfer(np.concatenate(ideals[c]), np.concatenate(measured[c]), top)
            codes_test = test_codes(x_test, weights[c], dac, v_read, lsb * top)
            yield from run_mvm(d, codes_test)
            raw = (yield from value(d.mvm.codes)).astype(np.float64)
            truth = ideal_outputs(codes_test, weights[c], v_read, dac)
            record({test_ideal[c]: truth})
            tests[c] = (d.mvm, test_ideal[c])
            fixed = correct_codes(raw, fit["even"], fit["odd"], top)
            p = f"core{c}_"
            figures.update(
                {
                    p + "inl_even": fit["even"],
                    p + "inl_odd": fit["odd"],
                    p + "inl_max": fit["inl_max"],
                    p + "inl_max_median": float(np.nanmedian(fit["inl_max"])),
                    p + "fit_residual": float(np.nanmedian(fit["residual"])),
                    p + "rows_driven": n,
                    p + "adc_levels": top,
                    p + "mvm_error": _affine_error(raw * lsb, truth),
                    p + "mvm_error_corrected": _affine_error(fixed * lsb, truth),
                }
            )
        # each core's test read is kept in its signals until this one event
        yield from event([obj for pair in tests.values() for obj in pair], "test")
        return figures

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        summary: dict[str, Any] = {}
        if job is not None:
            yield from program_cores(job, stream="program")
            maps = yield from verify(board, job)
            summary.update({f"program_{k}": v for k, v in programming_summary(job, maps).items()})
        yield from checkpoint()
        yield from measure([d.conductance for d in devices])
        weights = {}
        for c, d in zip(cores, devices, strict=True):
            weights[c] = differential_weights((yield from value(d.conductance.map)), dpp)
        yield from event([d.conductance for d in devices], "reference")
        summary.update((yield from sweep_and_test(weights)))
        units = {k: "%" for k in summary if "mvm_error" in k}
        units.update({k: "LSB" for k in summary if k.endswith(("inl_max", "_median", "residual"))})
        yield from summary_stream(summary, units)
        return summary

    return (yield from bpp.finalize_wrapper(run(), restore_settings(saved)))


def _affine_error(measured: np.ndarray, ideal: np.ndarray) -> float:
    """MVM error (%) after each column's least-squares gain and offset on the ideal."""
    gain, offset = fit_affine(measured, ideal)
    return mvm_error(measured * gain + offset, ideal)

"""Fit the simulated device model to recorded runs: the digital twin of a measured chip.

Each fit is a pure numpy function of arrays a run holds; `calibrate` finds those arrays in
the runs and writes the results as a `labcim.twin.model_file.ModelFile`.  Every knob is
relative to the published HERMES fit (``mock_hw.pcm_stats``; Le Gallo et al., Nat.
Electron. 6, 680 (2023)), where 1.0 is the published statistics:

=========================  ===========================================  ==================
knob                       measured as                                  from
=========================  ===========================================  ==================
``prog_noise_scale``       rms cell error at the verify read over the   TDP programming
                           HERMES two-device sigma at the target        (any plan)
``stuck_fraction``,        devices that a full SET left below, or a     TDP programming
``stuck_set_share``        full RESET above, ``0.1 g_max``
``drift_nu_scale``,        per-cell drift exponent (summed conductance  ``retention``
``drift_nu_std_scale``     of a polarity) per level over the HERMES
                           mean / std of nu for that many devices
``read_noise_scale``       1/f wander: the spread of log G around each  ``retention``
                           cell's power law, over the HERMES Q_s
``read_noise_rel``         relative rms difference of repeated reads    ``conductance_map``
``col_gain_std``,          per-column least-squares line of the MVM     ``mvm_characteri-
``col_offset_std``         outputs on the read-back ideal               zation``
``adc_inl_even_std``,      spread / mean of the columns' fitted INL     ``adc_characteri-
``adc_inl_odd_mean``,      coefficients, fit noise removed              zation``
``adc_inl_odd_std``
=========================  ===========================================  ==================

Drift is fitted per cell because the HERMES fits describe cells (docs/physics.md): on a
chip with two devices per polarity the one-device fit does not describe its devices.

See docs/replay.md for the workflow and the figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labcim.adc_transfer import fit_transfer
from labcim.characterization import cell_conductance
from labcim.hdf5 import Run
from labcim.recorded import is_replay, label
from labcim.twin.chips import DEFAULT_PRESET
from labcim.twin.model_file import ModelFile
from labcim.writeverify.base import DEAD_FRACTION
from mock_hw import pcm_stats

MIN_CONDUCTANCE = 1.0
"""Devices reading less (uS) are left out of the drift and read-noise fits: near the
RESET floor the reading is dominated by noise, not by the device's drift."""


class CalibrationError(ValueError):
    """Runs that give nothing to fit, or a fit without enough data (naming what is missing)."""


# -- pure fits -------------------------------------------------------------------------


def fit_prog_noise(
    targets: np.ndarray, cells: np.ndarray, tolerance: float, devices_per_polarity: int
) -> float:
    """``prog_noise_scale``: rms programming error over the HERMES two-device sigma.

    Uses the cells whose target lies between ``2 tolerance`` and the one-device maximum
    (10.35 uS): two-device programming leaves one device of them at an intermediate
    level, which is what the HERMES polynomial describes.  The write-verify residual
    (uniform within +-tolerance, variance ``tolerance^2 / 3``) is removed in quadrature;
    the 1/f wander and read noise of the verify read are not, which biases the result
    up by about 5 % at the published statistics.

    Parameters
    ----------
    targets : ndarray
        Target conductance of each cell polarity (uS).
    cells : ndarray
        Summed conductance of the same cell polarities at the verify read (uS); NaN for
        cells to leave out (failed ones).
    tolerance : float
        Write-verify tolerance (uS).
    devices_per_polarity : int
        1 or 2 (selects the HERMES polynomial).
    """
    g_max = pcm_stats.G_MAX[devices_per_polarity]
    use = (targets >= 2 * tolerance) & (targets <= pcm_stats.G_MAX[1]) & np.isfinite(cells)
    if use.sum() < 100:
        raise CalibrationError(f"only {int(use.sum())} programmed cells in the fitted range")
    err2 = np.mean((cells[use] - targets[use]) ** 2) - tolerance**2 / 3
    sigma2 = np.mean(pcm_stats.prog_sigma(targets[use] / g_max, devices_per_polarity) ** 2)
    return float(np.sqrt(max(err2, 0.0) / sigma2))


def fit_stuck(first: np.ndarray, on: np.ndarray, g_max: float) -> tuple[float, float, int]:
    """Stuck devices from the read right after the first pulses of TDP.

    TDP fully SETs every device of a cell polarity that needs conductance and fully
    RESETs the others, so a device below ``DEAD_FRACTION * g_max`` after a SET is stuck
    low and one above it after a RESET is stuck high; each share estimates the fraction
    of all devices stuck that way.

    Parameters
    ----------
    first : ndarray, shape (2, dpp, ...)
        Device conductances (uS) read after the first pulses.
    on : ndarray of bool, shape (2, ...)
        Cell polarities that got a full SET (the others a full RESET).
    g_max : float
        Nominal maximum conductance of one device (uS).

    Returns
    -------
    stuck_fraction : float
        Fraction of devices stuck (low + high).
    stuck_set_share : float
        Share of them stuck high (at SET); 0.5 if none were found.
    devices : int
        Devices looked at.
    """
    on = np.broadcast_to(np.expand_dims(on, 1), first.shape)
    dead = DEAD_FRACTION * g_max
    low = float(np.mean(first[on] < dead)) if on.any() else 0.0
    high = float(np.mean(first[~on] > dead)) if (~on).any() else 0.0
    total = low + high
    return total, high / total if total else 0.5, int(first.size)


@dataclass(frozen=True)
class DriftFit:
    """Drift and 1/f wander relative to the HERMES fit, and what they were fitted on."""

    nu_scale: float
    nu_std_scale: float
    q_scale: float
    levels: np.ndarray
    nu: np.ndarray
    nu_std: np.ndarray
    devices: int


def fit_drift(
    elapsed: np.ndarray,
    g: np.ndarray,
    t0: float,
    read_noise_rel: float,
    n_levels: int = 8,
    g_max: float = pcm_stats.G_MAX[1],
    devices: int = 1,
) -> DriftFit:
    """Drift exponent mean / std and wander amplitude from maps read at several times.

    Each device's ``log G`` is fitted by least squares on ``log(t + t0)``; its slope is
    ``-nu``.  The HERMES 1/f wander is a random walk in log-time (variance
    ``Q_s^2 ln t``), so the residuals of each fit and the noise of its slope follow from
    the covariance ``K_ij = ln min(t_i, t_j)`` plus independent read noise: per level,
    the mean residual square gives ``Q_s^2``, which gives the part of the spread of the
    fitted nu that is noise, removed before comparing with the HERMES std.  Per level
    (bins of equal population of the first read, devices below `MIN_CONDUCTANCE` left
    out) the median and robust spread (IQR / 1.349, insensitive to stuck devices whose
    nu is 0) are compared with the HERMES mean and std for ``devices`` devices per cell
    at the level's conductances extrapolated back to programming.

    Parameters
    ----------
    elapsed : ndarray, shape (n,)
        Read times since programming (s), n >= 3.
    g : ndarray, shape (n, ...)
        Conductances (uS) of the same devices, or cells, at those times.
    t0 : float
        Drift onset (s) of the power law ``((t + t0) / t0)^-nu``.
    read_noise_rel : float
        Relative std of one read's independent noise.
    n_levels : int
        Conductance levels.
    g_max : float
        Largest conductance of one device (uS; HERMES: 10.35 uS).
    devices : int
        Devices per cell of ``g`` (1 or 2): the fits are the HERMES fits for that many
        devices, at ``G / (devices * g_max)``.  The read noise of a cell's sum is taken
        as ``read_noise_rel`` (a two-device cell's is up to sqrt 2 lower).
    """
    t = np.asarray(elapsed, np.float64)
    n = t.size
    if n < 3:
        raise CalibrationError(f"drift needs reads at 3 or more times, got {n}")
    lg = np.asarray(g, np.float64).reshape(n, -1)
    keep = np.all(lg >= MIN_CONDUCTANCE, axis=0)
    lg = np.log(lg[:, keep])
    if lg.shape[1] < 100 * n_levels:
        raise CalibrationError(f"only {lg.shape[1]} devices read >= {MIN_CONDUCTANCE} uS")
    x = np.log(t + t0)
    design = np.stack([np.ones(n), x], axis=1)
    coef = np.linalg.pinv(design)  # (2, n): intercept and slope weights
    nu = -(coef[1] @ lg)
    resid = lg - design @ (coef @ lg)
    rss = np.sum(resid * resid, axis=0)
    m = np.eye(n) - design @ coef  # residual projector
    k = np.log(np.minimum.outer(t, t))
    c = coef[1]
    rss_per_q2, rss_read = np.trace(m @ k @ m), (n - 2) * read_noise_rel**2
    slope_per_q2, slope_read = c @ k @ c, (c @ c) * read_noise_rel**2
    g0 = np.exp(lg[0]) * ((t[0] + t0) / t0) ** nu  # back to programming time
    edges = np.quantile(np.exp(lg[0]), np.linspace(0, 1, n_levels + 1))
    level = np.clip(np.searchsorted(edges, np.exp(lg[0]), side="right") - 1, 0, n_levels - 1)
    rows = []
    for b in range(n_levels):
        s = level == b
        q2 = max((rss[s].mean() - rss_read) / rss_per_q2, 0.0)
        q25, q75 = np.percentile(nu[s], [25, 75])
        spread = ((q75 - q25) / 1.349) ** 2 - (q2 * slope_per_q2 + slope_read)
        g_r = g0[s] / (devices * g_max)
        rows.append(
            (
                s.sum(),
                np.median(np.exp(lg[0][s])),
                np.median(nu[s]),
                np.sqrt(max(spread, 0.0)),
                np.median(pcm_stats.drift_nu_mean(g_r)),
                np.mean(pcm_stats.drift_nu_std(g_r, devices=devices) ** 2),
                q2,
                np.mean(pcm_stats.read_noise_qs(g_r, devices=devices) ** 2),
            )
        )
    count, levels, nu_b, sd_b, mu_h, var_h, q2_b, q2_h = np.array(rows).T
    return DriftFit(
        nu_scale=float(np.sum(count * nu_b) / np.sum(count * mu_h)),
        nu_std_scale=float(np.sqrt(np.sum(count * sd_b**2) / np.sum(count * var_h))),
        q_scale=float(np.sqrt(np.sum(count * q2_b) / np.sum(count * q2_h))),
        levels=levels,
        nu=nu_b,
        nu_std=sd_b,
        devices=int(count.sum()),
    )


def fit_read_noise(maps: np.ndarray) -> float:
    """``read_noise_rel``: relative rms difference of consecutive reads / sqrt 2.

    Parameters
    ----------
    maps : ndarray, shape (reads, ...)
        The same devices read two or more times in quick succession (uS); devices
        below `MIN_CONDUCTANCE` are left out.
    """
    g = np.asarray(maps, np.float64).reshape(len(maps), -1)
    if len(g) < 2:
        raise CalibrationError("read noise needs a conductance_map run with reads >= 2")
    g = g[:, np.all(g >= MIN_CONDUCTANCE, axis=0)]
    rel = np.diff(g, axis=0) / g[:-1]
    return float(np.sqrt(np.mean(rel * rel) / 2))


def fit_columns(outputs: np.ndarray, ideal: np.ndarray, full_scale: float) -> dict[str, float]:
    """ADC gain / offset mismatch per column from MVM outputs vs their ideal values.

    A least-squares line per column; the column gains' smooth trend across the array
    (IR drop grows along the row wires) is removed by a quadratic in the column index
    before their spread is taken.

    Parameters
    ----------
    outputs, ideal : ndarray, shape (vectors, cols)
        Measured and ideal outputs (uA; the ideal on the read-back conductances).
    full_scale : float
        ADC full scale (uA).

    Returns
    -------
    dict
        ``col_gain_std`` (relative), ``col_offset_std`` (fraction of full scale),
        ``gain``, ``offset`` (uA): mean column gain and offset.
    """
    y = np.asarray(outputs, np.float64)
    x = np.asarray(ideal, np.float64)
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    gain = np.sum((x - xm) * (y - ym), axis=0) / np.sum((x - xm) ** 2, axis=0)
    offset = ym - gain * xm
    col = np.arange(gain.size)
    trend = np.polyval(np.polyfit(col, gain, 2), col)
    return {
        "col_gain_std": float(np.std(gain / trend)),
        "col_offset_std": float(np.std(offset) / full_scale),
        "gain": float(gain.mean()),
        "offset": float(offset.mean()),
    }


def fit_adc_inl(
    even: np.ndarray, odd: np.ndarray, even_se: np.ndarray, odd_se: np.ndarray
) -> dict[str, float]:
    """ADC INL knobs from the columns' fitted coefficients (:mod:`labcim.adc_transfer`).

    The spread across columns with the mean squared standard error of the fits removed
    (so a linear ADC gives about 0), and the mean of the odd coefficient.

    Parameters
    ----------
    even, odd : ndarray
        Per-column INL coefficients (fractions of full scale); NaN columns are left out.
    even_se, odd_se : ndarray
        Their standard errors.

    Returns
    -------
    dict
        ``adc_inl_even_std``, ``adc_inl_odd_mean``, ``adc_inl_odd_std``.
    """
    use = np.isfinite(even) & np.isfinite(odd)
    if use.sum() < 8:
        raise CalibrationError(f"only {int(use.sum())} ADC columns with a transfer fit")

    def spread(c: np.ndarray, se: np.ndarray) -> float:
        return float(np.sqrt(max(np.var(c[use]) - np.mean(se[use] ** 2), 0.0)))

    return {
        "adc_inl_even_std": spread(even, even_se),
        "adc_inl_odd_mean": float(np.mean(odd[use])),
        "adc_inl_odd_std": spread(odd, odd_se),
    }


# -- from runs -------------------------------------------------------------------------

PLANS_FITTED = (
    "tdp_program (or any plan programming with TDP), retention (with program), "
    "conductance_map (reads >= 2), mvm_characterization (4-phase), adc_characterization"
)
"""What gives data, for messages."""


@dataclass
class Estimates:
    """Estimates of each knob, one per run and core, combined by weight (devices); and
    what could not be used, with the reason.

    Attributes
    ----------
    values : dict
        Knob -> ``(value, weight, source)`` estimates.
    skipped : list of (str, str)
        ``(source, reason)`` of each run or core that gave nothing.
    warnings : list of str
        Fits made on assumptions the data could not check.
    """

    values: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, knob: str, value: float, weight: int, source: str) -> None:
        """Record one estimate of ``knob`` from ``source`` (e.g. ``run 3 core0``)."""
        self.values.setdefault(knob, []).append((float(value), int(weight), source))

    def skip(self, source: str, reason: str) -> None:
        """Record that ``source`` gave nothing, and why."""
        self.skipped.append((source, reason))

    def sources(self) -> set[str]:
        """Every source that gave an estimate."""
        return {s for est in self.values.values() for _, _, s in est}

    def combined(self) -> dict[str, float]:
        """Weighted mean of each knob's estimates."""
        return {
            knob: float(np.average([v for v, _, _ in est], weights=[w for _, w, _ in est]))
            for knob, est in self.values.items()
        }


PERIPHERY_KNOBS = (
    "col_gain_std",
    "col_offset_std",
    "adc_inl_even_std",
    "adc_inl_odd_mean",
    "adc_inl_odd_std",
)
"""Knobs that go to the model file's ``periphery`` (the others to ``model_params``)."""

DIAGNOSTIC_KNOBS = ("drift_nu_std_scale",)
"""Knobs estimated and reported in the provenance but not written as model parameters:
the spread of nu is inflated by stuck devices (nu = 0) and by the relaxation, which
moves a cell away from the conductance its nu was drawn at (with 2 % stuck devices and
1.5x programming noise it reads 1.14 for a true 1.0; 1.00 at the published
statistics)."""


def calibrate(runs: Iterable[Run], sources: Sequence[str] = ()) -> ModelFile:
    """Fit the simulated PCM model to ``runs`` and return it as a model file.

    Runs of any plan that programmed with TDP give ``prog_noise_scale`` and the stuck
    devices, ``retention`` runs the drift and wander, ``conductance_map`` runs with
    ``reads >= 2`` the read noise, ``mvm_characterization`` runs the ADC column
    mismatch, ``adc_characterization`` runs the ADC nonlinearity.  Knobs without data
    keep the preset's values (they are not written).
    Every run is used for what it can give; a run (or one core of it) that gives
    nothing is named with the reason in ``provenance["skipped"]``, and fits that rest on
    an assumption the data could not check in ``provenance["warnings"]``.

    Parameters
    ----------
    runs : iterable of Run
        Recorded runs, of any plan and outcome.
    sources : sequence of str
        The files they come from, for the provenance.

    Raises
    ------
    CalibrationError
        Nothing could be fitted: the message names every run and why it gave nothing.
    """
    runs = list(runs)
    est = Estimates()
    usable = []
    for run in runs:
        reason = _unusable(run)
        if reason:
            est.skip(label(run), reason)
        else:
            usable.append(run)
    for run in usable:
        if run.plan_name == "conductance_map":
            _read_noise(run, est)
    read_noise = est.combined().get("read_noise_rel")
    if read_noise is None and any(r.plan_name == "retention" for r in usable):
        read_noise = _default("read_noise_rel")
        est.warnings.append(
            f"read_noise_scale assumes read_noise_rel = {read_noise} (the preset's): no "
            "conductance_map run with reads >= 2 measured it"
        )
    for run in usable:
        before = len(est.skipped)
        _programming(run, est)
        if run.plan_name == "retention":
            _retention(run, est, read_noise)
        elif run.plan_name == "mvm_characterization":
            _mvm(run, est)
        elif run.plan_name == "adc_characterization":
            _adc(run, est)
        name = label(run)
        used = any(s == name or s.startswith(name + " ") for s in est.sources())
        if not used and len(est.skipped) == before:
            est.skip(name, f"{run.plan_name} gives nothing to fit (fitted: {PLANS_FITTED})")
    if not est.values:
        detail = "; ".join(f"{s}: {r}" for s, r in est.skipped) or "no runs given"
        raise CalibrationError(f"nothing to fit ({detail})")
    fitted = est.combined()
    ident = usable[0].metadata["board_identity"]
    record = ident.get("sim_chip")
    preset = record["spec"]["preset"] if record else DEFAULT_PRESET["pcm"]
    return ModelFile(
        preset,
        {
            k: round(v, 6)
            for k, v in fitted.items()
            if k not in PERIPHERY_KNOBS and k not in DIAGNOSTIC_KNOBS
        },
        {k: round(v, 6) for k, v in fitted.items() if k in PERIPHERY_KNOBS},
        {
            "sources": list(sources),
            "runs": [{"uid": r.uid, "plan_name": r.plan_name} for r in usable],
            "estimates": {
                knob: [{"value": v, "devices": w, "from": s} for v, w, s in items]
                for knob, items in est.values.items()
            },
            "skipped": [{"from": s, "reason": r} for s, r in est.skipped],
            "warnings": list(est.warnings),
        },
    )


def _unusable(run: Run) -> str:
    """Why ``run`` cannot be calibrated from at all ("" if it can)."""
    if run.exit_status != "success":
        return f"exit status {run.exit_status!r}: only finished runs are used"
    if is_replay(run):  # fitting the simulator to its own output would fit nothing
        return "a replay on the simulator, not a measurement"
    ident = run.metadata.get("board_identity")
    if not ident:
        return "no board identity (not a run of a chip test board)"
    if ident.get("device_type") != "pcm":
        return f"device type {ident.get('device_type')!r}: only PCM (HERMES fit) is calibrated"
    return ""


def _default(knob: str) -> float:
    from mock_hw.pcm import PCMParams

    return getattr(PCMParams(), knob)


def _src(run: Run, core: int) -> str:
    return f"{label(run)} core{core}"


def _fit(est: Estimates, source: str, fit: Any, *args: Any) -> None:
    """``fit(*args)``; what it cannot fit becomes a skip of ``source`` with the reason.

    Data laid out otherwise than this version of labcim records it (a key missing, an
    array of another shape) is reported the same way: a user's file never ends the
    calibration with a traceback.
    """
    try:
        fit(*args)
    except CalibrationError as exc:
        est.skip(source, str(exc))
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        est.skip(source, f"data not as expected ({type(exc).__name__}: {exc})")


def _key(stream: Any, suffix: str) -> str:
    """The data key of ``stream`` ending with ``suffix`` (the board name is not fixed)."""
    found = [k for k in stream if k.endswith(suffix)]
    if len(found) != 1:
        raise CalibrationError(f"stream {stream.name!r}: {len(found)} data keys end with {suffix}")
    return found[0]


def _cores(run: Run) -> list[int]:
    """The cores the run's arguments name (default: all)."""
    cores = run.plan_args.get("cores")
    return list(range(run.metadata["board_identity"]["n_cores"])) if cores is None else cores


def _core_map(stream: Any, core: int) -> np.ndarray:
    """The maps of ``core`` over the events of ``stream``."""
    return np.asarray(stream[_key(stream, f"core{core}_conductance_map")])


def _read_noise(run: Run, est: Estimates) -> None:
    if run.plan_args.get("reads", 1) < 2:
        est.skip(label(run), "reads = 1: read noise needs a conductance_map run with reads >= 2")
        return
    for core in _cores(run):

        def fit(core: int = core) -> None:
            maps = _core_map(run.streams["primary"], core)
            est.add("read_noise_rel", fit_read_noise(maps), maps[0].size, _src(run, core))

        _fit(est, _src(run, core), fit)


def _programming_jobs(prog: dict[str, Any]) -> list[dict[str, Any]]:
    """The programming jobs of a run's ``programming`` metadata: one job, or one per
    layer (``network_inference``: ``{"layer0": job, ...}``)."""
    if "strategy" in prog:
        return [prog]
    return [job for job in prog.values() if isinstance(job, dict) and "strategy" in job]


def _programming(run: Run, est: Estimates) -> None:
    """Programming noise and stuck devices from a run that programmed with TDP."""
    for prog in _programming_jobs(run.metadata.get("programming") or {}):
        if prog["strategy"] != "tdp":
            est.skip(label(run), f"programmed with {prog['strategy']!r}: only TDP is fitted")
            continue
        for tile in prog["tiles"]:
            core = tile["core"]
            _fit(est, _src(run, core), _programmed_core, run, prog, core, est)


def _programmed_core(run: Run, prog: dict[str, Any], core: int, est: Estimates) -> None:
    ident = run.metadata["board_identity"]
    dpp, g_max = ident["devices_per_polarity"], ident["g_max"]
    pulses = run.streams.get("program") or run.streams["primary"]
    verify = run.streams["verify"]
    summary = run.summary or {}
    targets = np.asarray(prog["targets"][f"core{core}"], np.float64)
    r, c = targets.shape[1:]
    suffix = f"core{core}_conductance_map"
    first = np.asarray(pulses.lazy(_key(pulses, suffix))[1])[:, :r, :c]
    final = np.asarray(verify[_key(verify, suffix)][-1])[:, :r, :c]
    cells = cell_conductance(final, dpp)
    failed = next((v for k, v in summary.items() if k.endswith(f"core{core}_failed_cells")), None)
    if failed is not None and len(failed):
        cells[tuple(np.asarray(failed).T)] = np.nan
    source = _src(run, core)
    scale = fit_prog_noise(targets, cells, prog["tolerance"], dpp)
    est.add("prog_noise_scale", scale, targets.size, source)
    stuck, share, devices = fit_stuck(
        first.reshape(2, dpp, r, c), targets > prog["tolerance"], g_max
    )
    est.add("stuck_fraction", stuck, devices, source)
    if stuck:
        est.add("stuck_set_share", share, devices, source)


def time_since_programming(run: Run) -> np.ndarray:
    """Seconds from the end of a retention run's programming to each of its reads.

    From the board clock the run recorded: at each read (``primary``) and at the verify
    read (``verify``), which came ``settle`` s after the last pulses.

    Raises
    ------
    CalibrationError
        If the run did not program (its times count from the start of the plan, not
        from programming: nothing it recorded says when the devices were programmed).
    """
    prog = run.metadata.get("programming")
    if not run.plan_args.get("program", True) or not prog or "verify" not in run.streams:
        raise CalibrationError(
            "program = False: its times count from the start of the plan, not from "
            "programming, so the drift cannot be fitted (run retention with program = True)"
        )
    primary, verify = run.streams["primary"], run.streams["verify"]
    clock = np.asarray(primary[_key(primary, "fpga_clock")], np.float64)
    programmed = float(np.asarray(verify[_key(verify, "fpga_clock")])[-1]) - prog["settle"]
    return clock - programmed


def _retention(run: Run, est: Estimates, read_noise: float | None) -> None:
    """Drift and 1/f wander from a retention run, at the HERMES drift onset.

    Fitted per cell (each polarity's summed conductance) against the HERMES fits for
    the chip's devices per polarity.  The onset ``t0`` of ``((t + t0) / t0)^-nu`` is the
    model's (one device: 200 s, two: 300 s), not the plan's ``t0`` argument: that one
    only shapes the plan's own summary, and reads from a minute to a day cannot tell
    ``t0`` and ``nu`` apart.
    """
    ident = run.metadata["board_identity"]
    g_max, dpp = ident["g_max"], ident["devices_per_polarity"]
    try:
        elapsed = time_since_programming(run)
    except CalibrationError as exc:
        est.skip(label(run), str(exc))
        return
    if elapsed[-1] < 10 * elapsed[0]:
        est.warnings.append(
            f"{label(run)}: reads from {elapsed[0]:.3g} s to {elapsed[-1]:.3g} s after "
            "programming span less than a decade: the drift exponent is poorly determined"
        )
    for core in _cores(run):

        def fit(core: int = core) -> None:
            maps = _core_map(run.streams["primary"], core)
            cells = np.stack([cell_conductance(m, dpp) for m in maps])
            t0 = pcm_stats.T0[dpp]
            drift = fit_drift(elapsed, cells, t0, read_noise, g_max=g_max, devices=dpp)
            source = _src(run, core)
            est.add("drift_nu_scale", drift.nu_scale, drift.devices, source)
            est.add("drift_nu_std_scale", drift.nu_std_scale, drift.devices, source)
            est.add("read_noise_scale", drift.q_scale, drift.devices, source)

        _fit(est, _src(run, core), fit)


def _mvm(run: Run, est: Estimates) -> None:
    primary = run.streams["primary"]
    for core in run.plan_args["cores"]:

        def fit(core: int = core) -> None:
            def data(suffix: str) -> np.ndarray:
                return np.asarray(primary[_key(primary, f"core{core}_{suffix}")])

            mode, bits = data("read_mode"), data("adc_bits")
            if not (mode == "4-phase").any():
                raise CalibrationError("no 4-phase MVM: the column mismatch is fitted on 4-phase")
            use = (mode == "4-phase") & (bits == bits[mode == "4-phase"][0])
            lsb = float(data("adc_lsb")[use][0])
            full_scale = lsb * (2 ** (int(bits[use][0]) - 1) - 1)
            outputs, ideal = data("mvm_outputs")[use], data("mvm_ideal_readback")[use]
            cols = outputs.shape[-1]
            fit = fit_columns(outputs.reshape(-1, cols), ideal.reshape(-1, cols), full_scale)
            for knob in ("col_gain_std", "col_offset_std"):
                est.add(knob, fit[knob], cols, _src(run, core))

        _fit(est, _src(run, core), fit)


def _adc(run: Run, est: Estimates) -> None:
    """ADC INL of every core of an adc_characterization run, refitted from its sweeps."""
    primary = run.streams["primary"]
    for core in run.plan_args["cores"]:

        def fit(core: int = core) -> None:
            codes = np.asarray(primary[_key(primary, f"core{core}_mvm_codes")])
            ideal = np.asarray(primary[_key(primary, f"core{core}_adc_ideal")])
            cols = codes.shape[-1]
            top = int(run.summary[f"core{core}_adc_levels"])
            inl = fit_transfer(ideal.reshape(-1, cols), codes.reshape(-1, cols), top)
            for knob, value in fit_adc_inl(
                inl["even"], inl["odd"], inl["even_se"], inl["odd_se"]
            ).items():
                est.add(knob, value, cols, _src(run, core))

        _fit(est, _src(run, core), fit)

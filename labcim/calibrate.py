"""Fit the simulated device model to recorded runs: the digital twin of a measured chip.

Each fit is a pure numpy function of arrays a run holds; `calibrate` finds those arrays in
the runs and writes the results as a `labcim.model_file.ModelFile`.  Every knob is
relative to the published HERMES fit (``mock_hw.pcm_stats``; Le Gallo et al., Nat.
Electron. 6, 680 (2023)), where 1.0 is the published statistics:

=========================  ===========================================  ==================
knob                       measured as                                  from
=========================  ===========================================  ==================
``prog_noise_scale``       rms cell error at the verify read over the   TDP programming
                           HERMES two-device sigma at the target        (any plan)
``stuck_fraction``,        devices that a full SET left below, or a     TDP programming
``stuck_set_share``        full RESET above, ``0.1 g_max``
``drift_nu_scale``,        per-device drift exponent per conductance    ``retention``
``drift_nu_std_scale``     level over the HERMES mean / std of nu
``read_noise_scale``       1/f wander: the spread of log G around each  ``retention``
                           device's power law, over the HERMES Q_s
``read_noise_rel``         relative rms difference of repeated reads    ``conductance_map``
``col_gain_std``,          per-column least-squares line of the MVM     ``mvm_characteri-
``col_offset_std``         outputs on the read-back ideal               zation``
=========================  ===========================================  ==================

See docs/replay.md for the workflow and the figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labcim.characterization import cell_conductance
from labcim.hdf5 import Run
from labcim.model_file import ModelFile
from labcim.replay import DEFAULT_PRESET, label
from mock_hw import pcm_stats

DEAD_FRACTION = 0.1
"""A device reading below (after a full SET) or above (after a full RESET) this fraction
of g_max is stuck; the write-verify strategies use the same rule."""

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
    nu is 0) are compared with the HERMES one-device mean and std at the level's
    conductances extrapolated back to programming.

    Parameters
    ----------
    elapsed : ndarray, shape (n,)
        Read times since programming (s), n >= 3.
    g : ndarray, shape (n, ...)
        Conductances (uS) of the same devices at those times.
    t0 : float
        Drift onset (s) of the power law ``((t + t0) / t0)^-nu``.
    read_noise_rel : float
        Relative std of one read's independent noise.
    n_levels : int
        Conductance levels.
    g_max : float
        Conductance (uS) that normalizes the HERMES fits (one device: 10.35 uS).
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
        g_r = g0[s] / g_max
        rows.append(
            (
                s.sum(),
                np.median(np.exp(lg[0][s])),
                np.median(nu[s]),
                np.sqrt(max(spread, 0.0)),
                np.median(pcm_stats.drift_nu_mean(g_r)),
                np.mean(pcm_stats.drift_nu_std(g_r, devices=1) ** 2),
                q2,
                np.mean(pcm_stats.read_noise_qs(g_r, devices=1) ** 2),
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


# -- from runs -------------------------------------------------------------------------


@dataclass
class Estimates:
    """Estimates of each knob, one per run and core, combined by weight (devices)."""

    values: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)

    def add(self, knob: str, value: float, weight: int, source: str) -> None:
        """Record one estimate of ``knob`` from ``source`` (e.g. ``run 3 core0``)."""
        self.values.setdefault(knob, []).append((float(value), int(weight), source))

    def combined(self) -> dict[str, float]:
        """Weighted mean of each knob's estimates."""
        return {
            knob: float(np.average([v for v, _, _ in est], weights=[w for _, w, _ in est]))
            for knob, est in self.values.items()
        }


PERIPHERY_KNOBS = ("col_gain_std", "col_offset_std")
"""Knobs that go to the model file's ``periphery`` (the others to ``model_params``)."""

DIAGNOSTIC_KNOBS = ("drift_nu_std_scale",)
"""Knobs estimated and reported in the provenance but not written as model parameters:
the spread of nu is inflated by stuck devices (nu = 0) and by the relaxation, which
moves a device away from the conductance its nu was drawn at (with 2 % stuck devices
and 1.5x programming noise it reads 1.26 for a true 1.0; 1.05 at the published
statistics)."""


def calibrate(runs: Iterable[Run], sources: Sequence[str] = ()) -> ModelFile:
    """Fit the simulated PCM model to ``runs`` and return it as a model file.

    Runs of any plan that programmed with TDP give ``prog_noise_scale`` and the stuck
    devices, ``retention`` runs the drift and wander, ``conductance_map`` runs with
    ``reads >= 2`` the read noise, ``mvm_characterization`` runs the ADC column
    mismatch.  Knobs without data keep the preset's values (they are not written).

    Parameters
    ----------
    runs : iterable of Run
        Successful runs of one chip technology.
    sources : sequence of str
        The files they come from, for the provenance.

    Raises
    ------
    CalibrationError
        No runs, runs of more than one technology or of a technology other than PCM,
        or nothing to fit in them (naming the plans that would give data).
    """
    runs = [r for r in runs if r.exit_status == "success"]
    identities = [r.metadata.get("board_identity") for r in runs]
    types = {i.get("device_type") for i in identities if i}
    if not types:
        raise CalibrationError("no successful run with a board identity to calibrate from")
    if types != {"pcm"}:
        raise CalibrationError(
            f"runs of device type(s) {sorted(types)}: only PCM (HERMES fit) is calibrated"
        )
    ident = next(i for i in identities if i)
    est = Estimates()
    conductance_maps = [r for r in runs if r.plan_name == "conductance_map"]
    for run in conductance_maps:
        for core, maps in _core_maps(run, run.streams["primary"]):
            if len(maps) >= 2:
                est.add("read_noise_rel", fit_read_noise(maps), maps[0].size, _src(run, core))
    read_noise = est.combined().get("read_noise_rel", _default("read_noise_rel"))
    for run in runs:
        _programming(run, est)
        if run.plan_name == "retention":
            _retention(run, est, read_noise)
        elif run.plan_name == "mvm_characterization":
            _mvm(run, est)
    if not est.values:
        raise CalibrationError(
            "nothing to fit: give runs of tdp_program (or any plan programming with TDP), "
            "retention, conductance_map (reads >= 2) or mvm_characterization"
        )
    fitted = est.combined()
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
            "runs": [{"uid": r.uid, "plan_name": r.plan_name} for r in runs],
            "estimates": {
                knob: [{"value": v, "devices": w, "from": s} for v, w, s in items]
                for knob, items in est.values.items()
            },
        },
    )


def _default(knob: str) -> float:
    from mock_hw.pcm import PCMParams

    return getattr(PCMParams(), knob)


def _src(run: Run, core: int) -> str:
    return f"{label(run)} core{core}"


def _key(stream: Any, suffix: str) -> str:
    """The data key of ``stream`` ending with ``suffix`` (the board name is not fixed)."""
    found = [k for k in stream if k.endswith(suffix)]
    if len(found) != 1:
        raise CalibrationError(f"stream {stream.name!r}: {len(found)} data keys end with {suffix}")
    return found[0]


def _core_maps(run: Run, stream: Any) -> list[tuple[int, np.ndarray]]:
    """``(core, maps over the events)`` of each core the run's arguments name."""
    cores = run.plan_args.get("cores")
    if cores is None:
        cores = range(run.metadata["board_identity"]["n_cores"])
    return [(c, np.asarray(stream[_key(stream, f"core{c}_conductance_map")])) for c in cores]


def _programming(run: Run, est: Estimates) -> None:
    """Programming noise and stuck devices from a run that programmed with TDP."""
    prog = run.metadata.get("programming")
    if not prog or prog["strategy"] != "tdp":
        return
    ident = run.metadata["board_identity"]
    dpp, g_max = ident["devices_per_polarity"], ident["g_max"]
    pulses = run.streams.get("program") or run.streams["primary"]
    verify = run.streams["verify"]
    summary = run.summary or {}
    for tile in prog["tiles"]:
        core = tile["core"]
        targets = np.asarray(prog["targets"][f"core{core}"], np.float64)
        r, c = targets.shape[1:]
        suffix = f"core{core}_conductance_map"
        first = np.asarray(pulses.lazy(_key(pulses, suffix))[1])[:, :r, :c]
        final = np.asarray(verify[_key(verify, suffix)][-1])[:, :r, :c]
        cells = cell_conductance(final, dpp)
        failed = next(
            (v for k, v in summary.items() if k.endswith(f"core{core}_failed_cells")), None
        )
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


def _retention(run: Run, est: Estimates, read_noise: float) -> None:
    primary = run.streams["primary"]
    elapsed = np.asarray(primary[_key(primary, "elapsed")])
    g_max = run.metadata["board_identity"]["g_max"]
    for core, maps in _core_maps(run, primary):
        fit = fit_drift(elapsed, maps, run.plan_args["t0"], read_noise, g_max=g_max)
        source = _src(run, core)
        est.add("drift_nu_scale", fit.nu_scale, fit.devices, source)
        est.add("drift_nu_std_scale", fit.nu_std_scale, fit.devices, source)
        est.add("read_noise_scale", fit.q_scale, fit.devices, source)


def _mvm(run: Run, est: Estimates) -> None:
    primary = run.streams["primary"]
    for core in run.plan_args["cores"]:

        def data(suffix: str, core: int = core) -> np.ndarray:
            return np.asarray(primary[_key(primary, f"core{core}_{suffix}")])

        mode, bits = data("read_mode"), data("adc_bits")
        use = (
            (mode == "4-phase") & (bits == bits[mode == "4-phase"][0])
            if (mode == "4-phase").any()
            else None
        )
        if use is None:
            continue
        lsb = float(data("adc_lsb")[use][0])
        full_scale = lsb * (2 ** (int(bits[use][0]) - 1) - 1)
        outputs, ideal = data("mvm_outputs")[use], data("mvm_ideal_readback")[use]
        cols = outputs.shape[-1]
        fit = fit_columns(outputs.reshape(-1, cols), ideal.reshape(-1, cols), full_scale)
        for knob in PERIPHERY_KNOBS:
            est.add(knob, fit[knob], cols, _src(run, core))

"""Running a model with its weight layers on crossbar cores and the rest on the host.

Per weight layer (dense, or conv2d as an im2col matrix), for a batch of input rows ``a``:

1. Quantize: DAC codes ``rint(clip(a / s_in, -1, 1) * L)``, ``s_in`` the layer's input
   scale (the input value of a full-scale code), ``L`` the largest code.
2. Analog MVMs: every tile gets its slice of the codes (repeated down the rows when the
   tile holds row copies of its block, :func:`labcim.network.placement.replicate`), one
   batched backend call per tile (chunked to ``max_batch`` vectors) on the tile's window
   of the core: its rows driven (the others at 0 V), its columns read.
3. Codes to weight units: the board returns ADC codes ``c`` (first corrected for the
   column's measured ADC nonlinearity, :mod:`labcim.adc_transfer`, if given); the output
   current is ``I = c * lsb`` (uA) and ``I = V_read (x / L) @ G`` with ``G`` in uS, so the
   partial product in weight units is ``c * lsb / V_read * s_in * s_w / g_cell_max``
   (``s_w``: the weight magnitude mapped to ``g_cell_max``,
   :func:`labcim.mapping.weight_scale`), divided by the number of row copies.
4. Drift factors per tile (:mod:`labcim.network.drift`), digital accumulation of the
   partial sums of row tiles (the mean over core copies of a block), then the per-column
   affine correction ``gain * y + offset`` fitted on a calibration read against the
   software product.
5. Digital part: the weights kept on the host (:mod:`labcim.network.hybrid`) at full
   precision, ``a @ W_digital``, plus the bias; then the layer's non-weight successors
   (activations, pooling, residual adds) run in float64 on the host.

Every operation that needs the chip (calibration, drift compensation, prediction,
tuning) is written once, as *steps*: a generator that yields :data:`Call` requests (the
name of a :class:`Backend` method and its arguments) and is sent each call's result.
:func:`run_steps` answers them synchronously from a :class:`Backend` (the simulator
called directly); a bluesky plan answers them with device messages
(``plans/inference.py``).  So the arithmetic (the pure per-step functions
:func:`quantize_inputs`, :func:`codes_to_weight_units`, :func:`fit_affine` and the
:class:`Deployment` bookkeeping) exists once, whoever talks to the hardware.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from labcim.adc_transfer import correct_codes
from labcim.mapping import Tile, weight_scale, weights_to_targets
from labcim.network.drift import drift_factors
from labcim.network.layers import WeightLayer
from labcim.network.model import Model
from labcim.network.placement import Placement, place
from labcim.network.placement import replicate as replicate_placement

ADC_HEADROOM = 1.0
"""Full scale chosen by auto-ranging, as a multiple of the largest calibration output."""


class Backend(Protocol):
    """What the engine needs from a chip (simulated or real).

    Attributes
    ----------
    rows, cols : int
        Crossbar size of one core.
    n_cores : int
        Number of cores.
    g_cell_max : float
        Largest conductance of one polarity of a cell (uS): the conductance a weight of
        magnitude ``weight_scale`` is programmed to.
    adc_gain_range : (float, float) or None
        The ``adc_gain`` settings the chip accepts, (lowest, highest), as its board
        reports them (`labcim.chip_identity.ChipIdentity.adc_gain_range`); None if it
        does not say.
    """

    rows: int
    cols: int
    n_cores: int
    g_cell_max: float
    adc_gain_range: tuple[float, float] | None

    def mvm(
        self,
        core: int,
        codes: np.ndarray,
        row_start: int = 0,
        col_start: int = 0,
        col_stop: int | None = None,
    ) -> np.ndarray:
        """ADC codes (int, (batch, col_stop - col_start)) of a batch of DAC codes (int,
        (batch, k)) on the rows [row_start, row_start + k), the other rows at 0 V: the
        columns [col_start, col_stop) (None: to the last) of the full MVM."""
        ...

    def adc_lsb(self, core: int) -> float:
        """Output current of one ADC code (uA) at the core's configuration."""
        ...

    def config(self, core: int) -> Mapping[str, Any]:
        """The core's configuration: at least read_voltage (V), dac_bits, adc_bits, adc_gain."""
        ...

    def configure(self, core: int, changes: Mapping[str, Any]) -> None:
        """Change configuration fields of ``core`` (here: adc_gain)."""
        ...


T = TypeVar("T")

Call = tuple[str, tuple[Any, ...]]
"""A request to the chip: the name of a :class:`Backend` method and its arguments."""

Steps = Generator[Call, Any, T]
"""Engine work that needs the chip: yields :data:`Call` requests, is sent each one's
result, and returns the work's result."""


def request(method: str, *args: Any) -> Steps[Any]:
    """One backend call as a step: ``codes = yield from request("mvm", core, x)``."""
    return (yield method, args)


def run_steps(backend: Backend, steps: Steps[T]) -> T:
    """Run engine ``steps`` to the end, answering every call with ``backend``.

    Returns
    -------
    The steps' result.
    """
    reply = None
    try:
        while True:
            method, args = steps.send(reply)
            reply = getattr(backend, method)(*args)
    except StopIteration as stop:
        return stop.value


def signed_levels(bits: int) -> int:
    """Largest code of a signed converter of ``bits`` bits (sign included)."""
    return (1 << (bits - 1)) - 1


def quantize_inputs(a: np.ndarray, input_scale: float, dac_bits: int) -> np.ndarray:
    """DAC codes (int32) of input rows ``a``: ``a / input_scale`` clipped to [-1, 1], rounded.

    Parameters
    ----------
    a : ndarray, shape (n, inputs)
        Layer inputs (any units).
    input_scale : float
        Input value mapped to the largest code (same units as ``a``).
    dac_bits : int
        DAC resolution including sign.
    """
    top = signed_levels(dac_bits)
    return np.rint(np.clip(a / input_scale, -1.0, 1.0) * top).astype(np.int32)


def codes_to_weight_units(
    codes: np.ndarray,
    lsb: float,
    read_voltage: float,
    input_scale: float,
    w_scale: float,
    g_cell_max: float,
) -> np.ndarray:
    """Convert ADC codes to the matrix product in the units of inputs x weights.

    Parameters
    ----------
    codes : ndarray of int
        ADC codes.
    lsb : float
        Current of one code (uA).
    read_voltage : float
        Read voltage of a full-scale input (V).
    input_scale : float
        Input value of a full-scale DAC code.
    w_scale : float
        Weight magnitude programmed to ``g_cell_max``.
    g_cell_max : float
        Largest conductance of one polarity of a cell (uS).
    """
    return codes * (lsb / read_voltage * input_scale * w_scale / g_cell_max)


def fit_affine(measured: np.ndarray, ideal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column least-squares ``ideal ~ gain * measured + offset``.

    Columns whose measured values barely vary (e.g. all weights kept digital) get gain 1
    and only an offset.

    Returns
    -------
    gain, offset : ndarray, shape (cols,)
    """
    m_mean, i_mean = measured.mean(axis=0), ideal.mean(axis=0)
    dm = measured - m_mean
    var = np.square(dm).mean(axis=0)
    cov = (dm * (ideal - i_mean)).mean(axis=0)
    flat = var <= 1e-12 * max(float(var.max()), 1e-300)
    gain = np.where(flat, 1.0, cov / np.where(flat, 1.0, var))
    return gain, i_mean - gain * m_mean


@dataclass
class AnalogLayer:
    """Everything the engine keeps about one weight layer on the chip.

    Parameters
    ----------
    index : int
        Layer index in the model.
    tiles : list of Tile
        Its blocks on cores (core copies of a block included).
    row_copies : int
        Copies of each block stacked down its core's rows.
    copies : dict of int to int
        Per core, how many cores hold its tile's block.
    analog : ndarray, shape (inputs, outputs)
        The part of the matrix programmed into the crossbars.
    digital : ndarray, shape (inputs, outputs)
        The part computed on the host (zeros where analog).
    w_scale : float
        Weight magnitude programmed to ``g_cell_max``.
    input_scale : float
        Input value of a full-scale DAC code (set by calibration or tuning).
    adc_gain : dict of int to float
        ADC gain of each tile's core.
    gain, offset : ndarray, shape (outputs,)
        Per-column affine correction from the calibration read.
    drift : dict of int to ndarray
        Per-core drift factors (ones until compensation).
    ref_rows : ndarray, optional
        The fixed input rows of the drift reference.
    reference : dict of int to ndarray
        Per-core outputs of ``ref_rows`` read right after calibration.
    """

    index: int
    tiles: list[Tile]
    analog: np.ndarray
    digital: np.ndarray
    w_scale: float
    row_copies: int = 1
    copies: dict[int, int] = field(default_factory=dict)
    input_scale: float = 1.0
    adc_gain: dict[int, float] = field(default_factory=dict)
    gain: np.ndarray | None = None
    offset: np.ndarray | None = None
    drift: dict[int, np.ndarray] = field(default_factory=dict)
    ref_rows: np.ndarray | None = None
    reference: dict[int, np.ndarray] = field(default_factory=dict)


class Deployment:
    """A model placed on a chip: conductance targets, calibration, drift state, execution.

    Methods that need the chip return :data:`Steps`: run them with
    ``run_steps(backend, dep.calibrate(X_cal))`` or drive them from a plan.

    Parameters
    ----------
    model : Model
        The network.
    placement : Placement
        Where each weight layer's tiles live (:func:`labcim.network.placement.place`).
    g_cell_max : float
        Conductance (uS) a weight of magnitude ``w_scale`` is programmed to: the
        write-verify strategy's ``g_cell_max`` (:mod:`labcim.writeverify`).
    adc_gain_range : (float, float) or None
        The ``adc_gain`` settings the chip accepts (`Backend.adc_gain_range`): gains
        chosen by auto-ranging are clipped to it; None leaves them as computed.
    digital_masks : dict of int to ndarray of bool, optional
        Per layer index, the weights computed on the host instead of in analog
        (:func:`labcim.network.hybrid.select_digital`).
    scaling : str
        Weight scaling of :func:`labcim.mapping.weight_scale` with its default
        percentile, the same as the programming plan's ``scaling``, so the engine reads
        the weights back with the scale they were programmed with.  The default clips
        the largest 1 % of |W| (NeuRRAM clips at the 95th percentile): the rest gets
        more conductance range.
    max_batch : int
        Largest number of input vectors per backend call.
    adc_correction : mapping of int to (ndarray, ndarray), optional
        Per core the INL coefficients ``(even, odd)`` of its ADC columns, measured by
        the ``adc_characterization`` plan
        (:func:`labcim.adc_transfer.corrections_from_summary`): codes of those cores are
        corrected before anything else (:func:`labcim.adc_transfer.correct_codes`).
    """

    def __init__(
        self,
        model: Model,
        placement: Placement,
        g_cell_max: float,
        adc_gain_range: tuple[float, float] | None = None,
        *,
        digital_masks: Mapping[int, np.ndarray] | None = None,
        scaling: str = "percentile",
        max_batch: int = 8192,
        adc_correction: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.model = model
        self.placement = placement
        self.g_cell_max = float(g_cell_max)
        self.adc_gain_range = adc_gain_range
        self.max_batch = int(max_batch)
        self.drift_mode = "none"
        self.adc_correction = dict(adc_correction or {})
        masks = dict(digital_masks or {})
        self.layers: dict[int, AnalogLayer] = {}
        for i, layer in model.weight_layers():
            mask = masks.get(i, np.zeros(layer.matrix.shape, bool))
            if mask.shape != layer.matrix.shape:
                raise ValueError(f"layer {i}: digital mask {mask.shape} != {layer.matrix.shape}")
            analog = np.where(mask, 0.0, layer.matrix)
            lp = placement.layer(i)
            self.layers[i] = AnalogLayer(
                i,
                lp.tiles,
                analog,
                layer.matrix - analog,
                # the scale of what is programmed, as the programming plan computes it
                weight_scale(np.tile(analog, (lp.row_copies, 1)), scaling),
                lp.row_copies,
                {t.core: lp.copies(t) for t in lp.tiles},
            )

    # -- programming ------------------------------------------------------------------

    def programmed_matrices(self) -> list[tuple[int, np.ndarray, list[int]]]:
        """What is programmed where: ``(layer, matrix, cores)``, one entry per copy.

        ``matrix`` (the layer's analog matrix, stacked ``row_copies`` times) is tiled over
        ``cores`` by :func:`labcim.mapping.tile_matrix` at the layer's mapping scale: the
        programming plan's ``prepare_programming(weights=matrix, cores=cores,
        scaling=...)`` programs exactly :meth:`targets`.
        """
        out = []
        for i, al in self.layers.items():
            matrix = np.tile(al.analog, (al.row_copies, 1))
            n = len(self.placement.layer(i).tiles) // max(al.copies.values(), default=1)
            for k in range(0, len(al.tiles), n):
                out.append((i, matrix, [t.core for t in al.tiles[k : k + n]]))
        return out

    def targets(self) -> dict[int, np.ndarray]:
        """Differential conductance targets (uS) per core, shape (2, tile rows, tile cols)
        (row copies stacked)."""
        return {
            t.core: np.tile(
                weights_to_targets(
                    al.analog[t.row0 : t.row1, t.col0 : t.col1], self.g_cell_max, al.w_scale
                ),
                (1, al.row_copies, 1),
            )
            for al in self.layers.values()
            for t in al.tiles
        }

    def digital_fraction(self) -> float:
        """Fraction of all weights computed on the host."""
        digital = sum(int(np.count_nonzero(al.digital)) for al in self.layers.values())
        return digital / sum(al.analog.size for al in self.layers.values())

    # -- analog execution -------------------------------------------------------------

    def tile_outputs(
        self, index: int, a: np.ndarray, input_scale: float | None = None
    ) -> Steps[dict[int, np.ndarray]]:
        """Raw analog partial products of every tile of layer ``index`` (weight units).

        One batched MVM call per tile (chunked to ``max_batch`` vectors).

        Parameters
        ----------
        index : int
            Weight layer index.
        a : ndarray, shape (n, inputs)
            Input rows.
        input_scale : float, optional
            Override of the layer's input scale (used by tuning).

        Returns
        -------
        dict of int to ndarray
            Per core, shape (n, tile cols): no drift factor, no affine correction.
        """
        al = self.layers[index]
        s_in = al.input_scale if input_scale is None else input_scale
        out = {}
        for t in al.tiles:
            cfg = yield from request("config", t.core)
            lsb = yield from request("adc_lsb", t.core)
            codes = quantize_inputs(a[:, t.row0 : t.row1], s_in, int(cfg["dac_bits"]))
            # The tile's window of the core: its rows (and row copies) from row 0 driven,
            # the others at 0 V; its columns from column 0 read.
            block = np.tile(codes, al.row_copies) if al.row_copies > 1 else codes
            width = t.shape[1]
            adc = []
            for k in range(0, len(a), self.max_batch):
                window = (block[k : k + self.max_batch], 0, 0, width)
                adc.append((yield from request("mvm", t.core, *window)))
            adc = np.concatenate(adc)
            if t.core in self.adc_correction:
                top = signed_levels(int(cfg["adc_bits"]))
                even, odd = self.adc_correction[t.core]
                adc = correct_codes(adc, even[:width], odd[:width], top)
            out[t.core] = codes_to_weight_units(
                adc,
                lsb,
                float(cfg["read_voltage"]),
                s_in,
                al.w_scale * (1.0 / al.row_copies),
                self.g_cell_max,
            )
        return out

    def accumulate(self, index: int, parts: Mapping[int, np.ndarray]) -> np.ndarray:
        """Sum the tiles' partial products (times their drift factors) into layer columns."""
        al = self.layers[index]
        n = len(next(iter(parts.values())))
        y = np.zeros((n, al.analog.shape[1]))
        for t in al.tiles:
            share = al.drift.get(t.core, 1.0) / al.copies.get(t.core, 1)
            y[:, t.col0 : t.col1] += parts[t.core] * share
        return y

    def analog_product(self, index: int, a: np.ndarray) -> Steps[np.ndarray]:
        """``a @ analog`` of layer ``index`` measured on the chip and corrected (weight units)."""
        al = self.layers[index]
        y = self.accumulate(index, (yield from self.tile_outputs(index, a)))
        return y if al.gain is None else y * al.gain + al.offset

    def layer_forward(self, index: int, layer: WeightLayer, x: np.ndarray) -> Steps[np.ndarray]:
        """Output of weight layer ``index`` for a batch ``x``: analog + digital part + bias."""
        a = layer.rows(x)
        y = (yield from self.analog_product(index, a)) + a @ self.layers[index].digital
        return layer.unrows(y + layer.bias, x.shape[1:])

    def forward(self, X: np.ndarray) -> Steps[list[np.ndarray]]:
        """Every layer's output for inputs ``X``, weight layers on the chip."""
        walk = self.model.walk(self.model.check_input(X))
        try:
            call = next(walk)
            while True:
                call = walk.send((yield from self.layer_forward(*call)))
        except StopIteration as stop:
            return stop.value

    def predict(self, X: np.ndarray) -> Steps[np.ndarray]:
        """Model output for inputs ``X`` with every weight layer on the chip."""
        return (yield from self.forward(X))[-1]

    # -- calibration ------------------------------------------------------------------

    def layer_rows(self, X: np.ndarray) -> dict[int, np.ndarray]:
        """Software input rows of every weight layer for model inputs ``X``."""
        outs = self.model.forward(X, keep=True)
        return {
            i: la.rows(self.model.check_input(X) if i == 0 else outs[i - 1])
            for i, la in self.model.weight_layers()
        }

    def auto_range(self, index: int, a: np.ndarray) -> Steps[None]:
        """Set the input scale to max |a| and each tile's ADC gain to fit its largest output.

        The ADC full scale of a tile is made ``ADC_HEADROOM`` times the largest partial
        product the software predicts for the rows ``a``.
        """
        al = self.layers[index]
        al.input_scale = float(np.abs(a).max()) or 1.0
        gains = {}
        for t in al.tiles:
            cfg = yield from request("config", t.core)
            lsb = yield from request("adc_lsb", t.core)
            x = np.clip(a[:, t.row0 : t.row1] / al.input_scale, -1, 1)
            block = al.analog[t.row0 : t.row1, t.col0 : t.col1]
            cells = np.abs(x @ block).max() * al.row_copies / al.w_scale  # copies add up
            peak = float(cfg["read_voltage"]) * self.g_cell_max * max(cells, 1e-3)  # uA
            full = lsb * signed_levels(int(cfg["adc_bits"]))
            gains[t.core] = float(cfg["adc_gain"]) * full / (ADC_HEADROOM * peak)
        yield from self.set_gains(index, gains)

    def set_gains(self, index: int, gains: Mapping[int, float]) -> Steps[None]:
        """Configure cores of layer ``index`` with ADC ``gains`` (clipped to the range the
        chip accepts, if it said)."""
        al = self.layers[index]
        for core, g in gains.items():
            if self.adc_gain_range is not None:
                g = np.clip(g, *self.adc_gain_range)
            al.adc_gain[core] = float(g)
            yield from request("configure", core, {"adc_gain": al.adc_gain[core]})

    def calibrate_layer(self, index: int, a: np.ndarray, n_ref: int = 256) -> Steps[None]:
        """Fit the layer's per-column affine correction and store its drift reference.

        Parameters
        ----------
        index : int
            Weight layer index.
        a : ndarray, shape (n, inputs)
            Calibration input rows (software activations of a calibration batch).
        n_ref : int
            Rows of ``a`` kept as the fixed drift-reference input.
        """
        al = self.layers[index]
        al.drift = {}
        parts = yield from self.tile_outputs(index, a)
        al.gain, al.offset = fit_affine(self.accumulate(index, parts), a @ al.analog)
        pick = np.linspace(0, len(a) - 1, min(n_ref, len(a))).astype(int)
        al.ref_rows = a[pick]
        al.reference = {core: p[pick] for core, p in parts.items()}

    def calibrate(self, X_cal: np.ndarray, *, auto: bool = True) -> Steps[None]:
        """Calibrate every weight layer on software activations of ``X_cal``.

        Run it right after programming: the drift reference is read here.

        Parameters
        ----------
        X_cal : ndarray
            Calibration inputs (e.g. a slice of the training set).
        auto : bool
            Auto-range input scales and ADC gains first (off after :mod:`tuning`).
        """
        for i, a in self.layer_rows(X_cal).items():
            if auto:
                yield from self.auto_range(i, a)
            yield from self.calibrate_layer(i, a)
        self.drift_mode = "none"

    def compensate_drift(self, mode: str = "global") -> Steps[None]:
        """Re-read each tile's drift reference input and set its factors (see drift.py)."""
        for i, al in self.layers.items():
            if al.ref_rows is None:
                raise RuntimeError(f"layer {i} has no drift reference: calibrate first")
            now = yield from self.tile_outputs(i, al.ref_rows)
            al.drift = {c: drift_factors(al.reference[c], now[c], mode) for c in now}
        self.drift_mode = mode

    # -- metadata ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the deployment for run metadata."""
        return {
            "placement": self.placement.to_dict(),
            "g_cell_max_uS": self.g_cell_max,
            "drift_compensation": self.drift_mode,
            "digital_fraction": self.digital_fraction(),
            "layers": [
                {
                    "layer": i,
                    "row_copies": al.row_copies,
                    "core_copies": max(al.copies.values(), default=1),
                    "adc_corrected_cores": sorted(c for c in al.copies if c in self.adc_correction),
                    "weight_scale": al.w_scale,
                    "input_scale": al.input_scale,
                    "adc_gain": {str(c): g for c, g in al.adc_gain.items()},
                    "digital_weights": int(np.count_nonzero(al.digital)),
                    "weights": int(al.analog.size),
                }
                for i, al in self.layers.items()
            ],
        }


def prepare(
    model: Model,
    backend: Backend,
    X: np.ndarray,
    *,
    cores: list[int] | None = None,
    replicate: bool = False,
    **kwargs: Any,
) -> Deployment:
    """Everything that can be refused, done before any device is programmed.

    Checks that ``X`` fits the model's input and that the model fits the chip, then
    builds the :class:`Deployment` (``kwargs`` go to it).  With ``replicate`` the chip's
    idle rows and cores hold copies of the layers
    (:func:`labcim.network.placement.replicate`).  Raises
    :class:`~labcim.network.model.ModelError` or
    :class:`~labcim.network.placement.PlacementError`.
    """
    model.check_input(X)
    placement = place(model, backend.rows, backend.cols, backend.n_cores, cores)
    if replicate:
        placement = replicate_placement(placement, cores)
    return Deployment(model, placement, backend.g_cell_max, backend.adc_gain_range, **kwargs)

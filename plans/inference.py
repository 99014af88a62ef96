"""Network inference on the chip: ``network_inference`` and the adapter it runs the engine with.

The network engine (:mod:`labcim.network.execution`) writes every operation that needs
the chip as *steps*: generators that yield backend calls (``("mvm", (core, codes))``,
``("config", (core,))``, ...) and are sent the results.  :func:`on_chip` answers those
calls with device messages, so calibration, drift compensation, tuning and prediction
run inside a plan with the engine's own arithmetic, none of it repeated here.  An MVM
call is one ``set`` of a whole batch of input vectors that runs the MVM
(:class:`MVMRun`), its wait, and the read of the codes; a prediction batch, which needs
only MVMs, is one device operation that runs the engine's steps in the board's worker
thread (:class:`WorkerSteps`).

Programming uses the programming plan's stubs inside this plan's one run
(:func:`plans.programming.prepare_programming` per weight layer, then
:func:`plans.programming.program_cores` over every core at once): the cores are
programmed interleaved and finish together, so the drift clock of the whole model
starts at one time, and the programming, its verify read and the inference that
depends on them are one run (bluesky runs cannot nest; sequential ``tdp_program``
runs, one per layer, would start each layer's drift clock at a different time).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable

from labcim.adc_transfer import corrections_from_summary
from labcim.chip_identity import ChipIdentity
from labcim.devices.core import WindowedInputs
from labcim.devices.signals import new_op_id
from labcim.metrics import mvm_error
from labcim.network.drift import DRIFT_MODES, time_key
from labcim.network.execution import Deployment, Steps, prepare, run_steps
from labcim.network.hybrid import select_digital, sensitivity
from labcim.network.loaders import load_npz
from labcim.network.model import Model, ModelError
from labcim.network.scores import SCORE_UNITS, Kind, output_kind, predicted_labels, scores
from labcim.network.tasks import Task
from labcim.network.tuning import tune as tune_steps
from labcim.plan_args import EXTRA_METADATA, Each, Integer, Interval, OneOf, Times, checks_together
from labcim.progress import EventProgress
from labcim.registry import TASKS_GROUP, load_registered, registered
from labcim.writeverify import make_strategy
from plans.programming import (
    SETTLE,
    STRATEGY,
    Programming,
    prepare_programming,
    program_cores,
    programming_summary,
    summary_units,
    verify,
)
from plans.stubs import (
    Derived,
    Figures,
    Plan,
    board_clock,
    check_cores,
    checkpoint,
    configure,
    derived,
    event,
    extra_metadata,
    identity,
    record,
    restore_settings,
    set_wait,
    settings,
    summary_stream,
    value,
    wait_until,
)

CALIBRATION_ROWS = 300
"""Training inputs of a reference task used for calibration (all, if it has fewer)."""


class MVMRun:
    """The MVM of a core as one bluesky ``set``: ``set(inputs)`` checks and stores the
    input codes (a :class:`~labcim.devices.core.WindowedInputs`, with the operation id
    of this MVM and the tile's window of the core) in ``core.mvm.inputs`` and triggers
    ``core.mvm``; the status finishes when the ADC codes are in ``core.mvm.codes``.

    Setting the inputs and triggering are otherwise two messages with a status each,
    and every status completion wakes the RunEngine's event loop; the engine runs one
    MVM per tile and batch.  A replay after a pause sets the same argument again, so the
    board returns the codes of the MVM's first execution; a pause stops the MVM as it
    would stop ``core.mvm``.

    Parameters
    ----------
    mvm : MVMReadout
        The core's ``mvm`` device.
    """

    def __init__(self, mvm: Any) -> None:
        self.mvm = mvm
        self.name = mvm.name

    def set(self, inputs: WindowedInputs) -> Any:
        """Store ``inputs`` (raises on bad codes before anything is sent), start the MVM."""
        self.mvm.inputs.put(inputs)
        return self.mvm.trigger()

    def stop(self, *, success: bool = False) -> None:
        """Stop the MVM in progress (bluesky stops what it set on a pause)."""
        self.mvm.stop(success=success)


class StepsArgument:
    """Engine steps for :class:`WorkerSteps`, with the operation ids of their MVMs.

    ``make()`` builds the steps afresh for every run of them (a replay after a pause
    runs them again); the k-th MVM takes the k-th id, drawn at the first run, so a
    replay sends the ids of the first run and the board returns the codes it computed
    then.  ``result`` is the steps' result once a run has finished them.

    Parameters
    ----------
    make : callable
        Builds the steps.
    mvms : int
        The number of MVM calls they make (one per tile of each layer): the status of a
        run fails after ``mvms`` times the board's status timeout (a backstop; the
        client bounds every frame).
    """

    def __init__(self, make: Callable[[], Steps[Any]], mvms: int) -> None:
        self.make = make
        self.mvms = mvms
        self.op_ids: list[int] = []
        self.result: Any = None
        self.finished = False

    def op_id(self, k: int) -> int:
        """The id of the ``k``-th MVM (k = 0, 1, ... in the order the steps ask)."""
        while len(self.op_ids) <= k:
            self.op_ids.append(new_op_id())
        return self.op_ids[k]

    def __repr__(self) -> str:
        return f"StepsArgument({len(self.op_ids)} MVMs)"


class WorkerSteps:
    """Engine steps that need only MVMs as one bluesky ``set``, run in the board's worker.

    ``set(StepsArgument)`` runs the steps in the board's worker thread (the thread every
    device operation of the board runs in), answering each MVM with ``core.mvm`` (its
    inputs put, checked, then :meth:`MVMReadout.measure` with the argument's operation
    id) and each settings request from the :class:`DeviceBackend`'s record, which the
    plan fills before the set (:meth:`DeviceBackend.forward`).  One status per batch
    instead of one per tile: every status completion wakes the RunEngine's loop from the
    worker thread, and a batch of a model runs an MVM per tile.  A pause stops the MVM in
    progress between two frames; the replay runs the steps again with the same ids.

    Parameters
    ----------
    backend : DeviceBackend
        The plan's backend (its board and settings record).
    """

    def __init__(self, backend: "DeviceBackend") -> None:
        self.backend = backend
        self.name = f"{backend.board.name}_engine"

    def set(self, steps: StepsArgument) -> Any:
        """Start the steps; the status finishes with ``steps.result`` set."""
        board = self.backend.board
        timeout = board.status_timeout * max(1, steps.mvms)
        return board.run_stoppable(self, lambda stop: self._run(steps, stop), timeout=timeout)

    def _run(self, steps: StepsArgument, stop: Any) -> None:
        steps.finished = False
        steps.result = run_steps(_WorkerCalls(self.backend, steps, stop), steps.make())
        steps.finished = True

    def stop(self, *, success: bool = False) -> None:
        """Stop the MVM in progress (bluesky stops what it set on a pause)."""
        self.backend.board.stop(success=success)


class _WorkerCalls:
    """The backend calls of one run of a :class:`StepsArgument`, in the worker thread."""

    def __init__(self, backend: "DeviceBackend", steps: StepsArgument, stop: Any) -> None:
        self.backend, self.steps, self.stop = backend, steps, stop
        self.count = 0

    def mvm(self, core: int, codes: np.ndarray, *window: int | None) -> np.ndarray:
        mvm = self.backend.board.core(core).mvm
        op_id = self.steps.op_id(self.count)
        self.count += 1
        mvm.inputs.put(WindowedInputs(codes, *window))
        mvm.measure(op_id, self.stop)
        return mvm.codes.get()

    def adc_lsb(self, core: int) -> float:
        return self.backend._adc_lsb[core]

    def config(self, core: int) -> dict[str, Any]:
        return dict(self.backend._config[core])


class DeviceBackend:
    """The engine's :class:`~labcim.network.execution.Backend`, as plan stubs over devices.

    Every method is a plan (a generator of messages) returning what the synchronous
    backend method returns; :func:`on_chip` calls them.

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    ident : dict
        Its identity (:func:`plans.stubs.identity`).
    g_cell_max : float
        Conductance (uS) full-scale weights are programmed to: the write-verify
        strategy's.

    Notes
    -----
    A core's settings and ADC step are read from the board once and kept until
    `configure` changes them: the board changes a core's settings only when told, and
    while the plan runs only the deployment tells it.  The engine asks for them at every
    tile of every batch; reading them each time cost 7 messages per tile.
    """

    def __init__(self, board: Any, ident: Mapping[str, Any], g_cell_max: float) -> None:
        self.board = board
        self.rows, self.cols, self.n_cores = ident["rows"], ident["cols"], ident["n_cores"]
        self.g_cell_max = g_cell_max
        self.adc_gain_range = ChipIdentity.from_record(ident).adc_gain_range
        self._config: dict[int, dict[str, Any]] = {}  # by core, as the board reported
        self._adc_lsb: dict[int, float] = {}
        self._mvm: dict[int, MVMRun] = {}
        self._engine = WorkerSteps(self)

    def mvm(self, core: int, codes: np.ndarray, *window: int | None) -> Plan:
        """ADC codes (int32, (batch, width)) of a batch of DAC codes (batch, k) on a window
        of the core: ``window`` = (row_start, col_start, col_stop) as for
        :meth:`~labcim.network.execution.Backend.mvm`."""
        if core not in self._mvm:
            self._mvm[core] = MVMRun(self.board.core(core).mvm)
        run = self._mvm[core]
        # Not an array, so bluesky does not list it; its op_id names the MVM.
        yield from set_wait(run, WindowedInputs(codes, *window, op_id=new_op_id()))
        return (yield from value(run.mvm.codes))

    def adc_lsb(self, core: int) -> Plan:
        """Output current of one ADC code (uA), as the board reported it."""
        if core not in self._adc_lsb:
            self._adc_lsb[core] = yield from value(self.board.core(core).adc_lsb)
        return self._adc_lsb[core]

    def config(self, core: int) -> Plan:
        """The core's settings (``labcim.devices.core.CORE_SETTINGS``)."""
        if core not in self._config:
            self._config[core] = yield from settings(self.board.core(core))
        return dict(self._config[core])

    def forward(self, dep: Deployment, X: np.ndarray) -> Plan:
        """Every layer's output of ``dep.forward(X)`` (the engine's prediction of a batch)
        as one device operation (:class:`WorkerSteps`): set, wait, and no message per
        tile.  The settings of the cores are read (if not yet known) before the set."""
        for core in dep.placement.cores_used:
            yield from self.config(core)
            yield from self.adc_lsb(core)
        tiles = sum(len(al.tiles) for al in dep.layers.values())
        steps = StepsArgument(lambda: dep.forward(X), tiles)
        yield from set_wait(self._engine, steps)
        if not steps.finished:  # a stop that bluesky did not follow with a replay
            raise RuntimeError(f"{self._engine.name}: the batch was stopped before its end")
        return steps.result

    def configure(self, core: int, changes: Mapping[str, Any]) -> Plan:
        """Set configuration fields of ``core``, waiting for the board; its settings and
        ADC step are read again when next asked for (the board may round them)."""
        self._config.pop(core, None)
        self._adc_lsb.pop(core, None)
        yield from configure(self.board.core(core), **changes)


def on_chip(backend: DeviceBackend, steps: Steps[Any]) -> Plan:
    """Run engine ``steps``, answering each backend call with device messages.

    Returns
    -------
    The steps' result.
    """
    reply = None
    while True:
        try:
            method, args = steps.send(reply)
        except StopIteration as stop:
            return stop.value
        reply = yield from getattr(backend, method)(*args)


def resolve_model(model: Model | str) -> tuple[Model, Task | None]:
    """The model of ``model`` (a :class:`Model`, the name of a reference task registered
    in the ``labcim.tasks`` entry-point group, or a ``.npz`` path) and its reference task,
    if it names one.

    Raises
    ------
    ModelError
        If the file is not a saved model, or describes an unsupported layer.
    """
    if isinstance(model, Model):
        return model, None
    tasks = registered(TASKS_GROUP, "reference task")
    if model in tasks:
        task = load_registered(TASKS_GROUP, "reference task", model)()
        if not isinstance(task, Task):
            raise ModelError(
                f"model = {model!r}: the {TASKS_GROUP} entry point {tasks[model].value} "
                f"made a {type(task).__name__}, not a labcim.network.tasks.Task"
            )
        return task.model, task
    if not Path(model).is_file():
        raise ModelError(f"model = {model!r} is neither a task ({list(tasks)}) nor a file")
    return load_npz(model), None


@dataclass
class Inference:
    """A checked inference job (:func:`prepare_inference`); nothing has been sent yet."""

    model: Model
    X: np.ndarray
    y: np.ndarray | None
    X_cal: np.ndarray
    dep: Deployment
    backend: DeviceBackend
    programming: Programming | None
    layer_programming: dict[str, Programming]
    times: list[float]
    modes: list[str]
    batch_size: int
    reference: np.ndarray
    kind: Kind
    signals: dict[str, Derived] = field(default_factory=dict)
    figures: Figures | None = None  # the signals as one object for the events

    @property
    def n_batches(self) -> int:
        """Batches per pass over ``X``."""
        return -(-len(self.X) // self.batch_size)


def prepare_inference(
    board: Any,
    ident: Mapping[str, Any],
    model: Model | str,
    X: np.ndarray | None,
    y: np.ndarray | None,
    X_cal: np.ndarray | None,
    cores: list[int] | None,
    strategy: str,
    times: Sequence[float],
    compensation: Sequence[str],
    digital_budget: float,
    batch_size: int,
    program: bool,
    settle: float,
    max_iterations: int,
    replicate: bool = False,
    adc_correction: Mapping[str, Any] | None = None,
) -> Inference:
    """Check every argument and build the job; nothing is sent to the board.

    Raises
    ------
    ModelError
        Unsupported layer, unreadable model file, inputs that do not fit the model.
    PlacementError
        A model that needs more cores than given.
    ValueError
        Naming the bad argument: unknown core or strategy, times not sorted or negative,
        unknown compensation mode, budget outside [0, 1], batch size < 1, labels that do
        not match the inputs, a task name needed for default inputs, an ADC correction
        without the INL of a core (or of another column count).
    """
    net, task = resolve_model(model)
    if X is None:
        if task is None:
            raise ValueError("X: give inputs, or name a reference task as the model")
        X, y = task.X_test, task.y_test if y is None else y
    X = net.check_input(X)
    if X_cal is None:  # only inputs are used: no labels leak into the calibration
        X_cal = X if task is None else task.X_train[:CALIBRATION_ROWS]
    X_cal = net.check_input(X_cal)
    labels_fit_inputs(X, y)
    times = TIMES("times", list(times))
    compensation = MODES("compensation", list(compensation))
    digital_budget = BUDGET("digital_budget", digital_budget)
    batch_size = Integer(1)("batch_size", batch_size)
    if cores is not None:
        check_cores(board, cores)
    wv = make_strategy(
        strategy,
        devices_per_polarity=ident["devices_per_polarity"],
        device_type=ident["device_type"],
        limits=ident["limits"],
        g_max=ident["g_max"],
    )
    backend = DeviceBackend(board, ident, wv.g_cell_max)
    masks = select_digital(sensitivity(net, X_cal), digital_budget) if digital_budget else None
    inl = None if adc_correction is None else corrections_from_summary(adc_correction)
    dep = prepare(
        net, backend, X, cores=cores, replicate=replicate, digital_masks=masks, adc_correction=inl
    )
    for core in dep.placement.cores_used:
        if inl is not None and (core not in inl or len(inl[core][0]) != ident["cols"]):
            raise ValueError(f"adc_correction has no INL of core {core} ({ident['cols']} columns)")
    layer_programming = {}
    if program:
        for i, matrix, on in dep.programmed_matrices():
            key = f"layer{i}" if f"layer{i}" not in layer_programming else f"layer{i}_on{on[0]}"
            layer_programming[key] = prepare_programming(
                board, dict(ident), matrix, on, strategy, None, max_iterations, "percentile", settle
            )
    merged = None
    if program:  # every core in one job: programmed interleaved, finished together
        jobs = [j for p in layer_programming.values() for j in p.jobs]
        merged = Programming(jobs, float("nan"), settle)  # per-layer scales: metadata
    return Inference(
        net,
        X,
        None if y is None else np.asarray(y),
        X_cal,
        dep,
        backend,
        merged,
        layer_programming,
        times,
        list(compensation),
        min(batch_size, len(X)),
        net.forward(X),
        output_kind(net),
    )


def make_signals(job: Inference) -> dict[str, Derived]:
    """The per-batch signals: time, mode, batch, valid samples, predictions, layer errors."""
    n = job.batch_size
    classifier = job.kind != "regression"
    blank = np.full(n, -1) if classifier else np.full((n, *job.model.output_shape), np.nan)
    signals = {
        "time": derived("time", 0.0, "s", kind="hinted"),
        "elapsed": derived("elapsed", 0.0, "s"),
        "compensation": derived("compensation", ""),
        "batch": derived("batch", 0, kind="hinted"),
        "samples": derived("samples", 0),
        "predictions": derived("predictions", blank),
    }
    for i in job.dep.layers:
        signals[f"layer{i}_error"] = derived(f"layer{i}_error", 0.0, "%", kind="hinted")
        signals[f"layer{i}_deviation"] = derived(f"layer{i}_deviation", 0.0, "%")
    return signals


def layer_errors(job: Inference, X: np.ndarray, outs: list[np.ndarray]) -> dict[str, float]:
    """Per weight layer, the MVM error (%) of its chip output against two references.

    ``layer{i}_error``: against the exact product of the same (chip) inputs, the
    layer's own error.  ``layer{i}_deviation``: against the software model's output of
    that layer, the error accumulated up to it.
    """
    software = job.model.forward(X, keep=True)
    out = {}
    for i, layer in job.model.weight_layers():
        x_in = X if i == 0 else outs[i - 1]
        flat = outs[i].reshape(len(X), -1)
        exact = layer.forward(x_in).reshape(len(X), -1)
        out[f"layer{i}_error"] = mvm_error(flat, exact)
        out[f"layer{i}_deviation"] = mvm_error(flat, software[i].reshape(len(X), -1))
    return out


def run_batches(job: Inference, t: float, elapsed: float, mode: str) -> Plan:
    """One pass over ``X`` at one time point and compensation mode, one event per batch.

    Returns
    -------
    ndarray
        The model outputs for every input.
    """
    s = job.signals
    outputs = []
    for b in range(job.n_batches):
        yield from checkpoint()
        X = job.X[b * job.batch_size : (b + 1) * job.batch_size]
        outs = yield from job.backend.forward(job.dep, X)
        outputs.append(outs[-1])
        padded = s["predictions"].get().copy()
        padded[len(X) :] = -1 if padded.dtype.kind == "i" else np.nan
        classified = padded.dtype.kind == "i"
        padded[: len(X)] = predicted_labels(outs[-1], job.kind) if classified else outs[-1]
        values = {s["predictions"]: padded, s["batch"]: b, s["samples"]: len(X)}
        values.update({s["time"]: t, s["elapsed"]: elapsed, s["compensation"]: mode})
        values.update({s[k]: v for k, v in layer_errors(job, X, outs).items()})
        record(values)
        yield from event([job.figures])
    return np.concatenate(outputs)


TIMES = Times()
"""``times``: s after programming, in order."""
MODES = Each(OneOf(tuple(DRIFT_MODES)))
"""``compensation``: drift compensation modes."""
BUDGET = Interval(0.0, 1.0)
"""``digital_budget``: the fraction of the weights computed on the host."""


def labels_fit_inputs(X: np.ndarray | None = None, y: np.ndarray | None = None, **_: Any) -> None:
    """ValueError unless ``y`` (if given with ``X``) has one label per input."""
    if X is not None and y is not None and len(np.asarray(y)) != len(np.asarray(X)):
        raise ValueError(f"y has {len(np.asarray(y))} labels for {len(np.asarray(X))} inputs")


@checks_together(labels_fit_inputs)
def network_inference(
    board: Readable,
    model: Model | str,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    X_cal: np.ndarray | None = None,
    cores: list[int] | None = None,
    strategy: Annotated[str, STRATEGY] = "tdp",
    times: Annotated[list[float] | None, TIMES] = None,
    compensation: Annotated[list[str] | None, MODES] = None,
    digital_budget: Annotated[float, BUDGET] = 0.0,
    tune: bool = False,
    batch_size: Annotated[int, Integer(1)] = 256,
    program: bool = True,
    settle: Annotated[float, SETTLE] = 1.0,
    max_iterations: Annotated[int, Integer(1)] = 20,
    replicate: bool = False,
    adc_correction: dict[str, Any] | None = None,
    md: Annotated[dict[str, Any] | None, EXTRA_METADATA] = None,
) -> Plan:
    """Run a network on the chip: place, program, calibrate, then infer at drift times.

    Every weight layer (dense, or conv2d as an im2col matrix) is placed on cores
    (:func:`labcim.network.placement.place`), programmed with write-verify (stream
    ``program``, verify read ``settle`` s later in ``verify``), calibrated on
    software activations of ``X_cal`` (input scale, ADC gain, per-column affine
    correction, and the drift-compensation reference read), optionally tuned per layer.
    Then for each time in ``times`` (s after the end of programming; a simulated clock
    is advanced, a real board is waited for) and each compensation mode, the drift
    factors are re-read and every batch of ``X`` runs through the chip: one MVM per
    tile per batch.

    Parameters
    ----------
    board : ChipTestBoard
        The board.
    model : Model or str
        A :class:`labcim.network.Model`, a reference task (a name in the
        ``labcim.tasks`` entry-point group: ``"digits-mlp"``, ``"digits-cnn"``,
        ``"diabetes"``, ``"breast-cancer"``, ``"friedman"``, ``"ripple"``) or the path of
        a model saved with :func:`labcim.network.loaders.save_npz`.  A model with one
        sigmoid output is scored as a binary classifier (:mod:`labcim.network.scores`).
    X : ndarray, optional
        Inputs, shape (n, *model input shape); default the task's test split.
    y : ndarray, optional
        Class labels or regression targets of ``X``; default the task's.  Without them
        only agreement with the software model is reported.
    X_cal : ndarray, optional
        Calibration inputs (no labels used); default the task's first 300 training
        inputs, or ``X`` for a model that is not a task.
    cores : list of int, optional
        Cores to place the model on, in order; default all, from core 0.
    strategy : str
        Write-verify strategy (:data:`labcim.writeverify.STRATEGIES`).
    times : list of float, optional
        Times (s, >= 0, sorted) after programming at which to infer; default one hour.
    compensation : list of str, optional
        Drift compensation modes to evaluate at every time: ``"none"``, ``"global"``
        (one factor per tile, aihwkit's) or ``"column"``; default ``["global"]``.
    digital_budget : float
        Fraction of the weights (the most sensitive, AnDi) computed on the host, in
        [0, 1].
    tune : bool
        Tune ADC gain and input scale per layer on the chip after calibration.
    batch_size : int
        Input vectors per event (and per MVM call of a tile).
    program : bool
        Program the weights first; False when the model is already on the chip (with
        the same placement, strategy and budget); times then count from the run's start.
    settle : float
        Wait (s) after programming before the verify read and calibration.
    max_iterations : int
        Largest number of write-verify pulse batches.
    replicate : bool
        Spend the idle rows and cores of ``cores`` on copies of the layers
        (:func:`labcim.network.placement.replicate`): a layer of at most half a core's
        rows is stacked down its core as often as it fits, and the whole model is copied
        onto idle cores; the ADC gains are auto-ranged for the summed copies.
    adc_correction : dict, optional
        The summary of an ``adc_characterization`` run (``core{N}_inl_even`` and
        ``core{N}_inl_odd`` of every core the model uses): ADC codes are corrected for
        each column's measured nonlinearity (:mod:`labcim.adc_transfer`).
    md : dict, optional
        Extra start metadata.

    Streams
    -------
    program, verify
        Write-verify iterations and the verify read (:mod:`plans.programming`).
    primary
        One event per batch: ``time`` (s), ``elapsed`` (s since programming, as
        measured), ``compensation``, ``batch``, ``samples``, ``predictions`` (class
        labels, -1 past ``samples``; or outputs, NaN past ``samples``),
        ``layer{i}_error`` and ``layer{i}_deviation`` (%, :func:`layer_errors`).
    evaluation
        One event per time and mode: its :func:`scores` and elapsed time.
    summary
        Software figures (``software_``), each time and mode's figures
        (``t{time}s_{mode}_``, :func:`labcim.network.drift.time_key`), placement
        utilization, digital fraction, per weight layer its ``layer{i}_row_copies`` and
        ``layer{i}_core_copies`` (1 without ``replicate``), tuning choices (``tune_``),
        programming figures (``program_``).

    Raises
    ------
    ModelError, PlacementError, ValueError
        Before anything is sent (:func:`prepare_inference`).
    """
    ident = yield from identity(board)
    times = [3600.0] if times is None else times
    compensation = ["global"] if compensation is None else compensation
    job = prepare_inference(
        board,
        ident,
        model,
        X,
        y,
        X_cal,
        cores,
        strategy,
        times,
        compensation,
        digital_budget,
        batch_size,
        program,
        settle,
        max_iterations,
        replicate,
        adc_correction,
    )
    job.signals = make_signals(job)
    job.figures = Figures("inference", job.signals.values())
    dep = job.dep
    devices = [board.core(c) for c in dep.placement.cores_used]
    start = {
        "plan_name": "network_inference",
        "plan_args": {
            "model": model if isinstance(model, str) else "<Model>",
            "cores": cores,
            "strategy": strategy,
            "times": job.times,
            "compensation": job.modes,
            "digital_budget": digital_budget,
            "tune": tune,
            "batch_size": batch_size,
            "program": program,
            "settle": settle,
            "max_iterations": max_iterations,
            "replicate": replicate,
            "adc_correction": {
                f"core{c}_inl_{part}": v.tolist()
                for c, pair in dep.adc_correction.items()
                for part, v in zip(("even", "odd"), pair, strict=True)
            }
            or None,
        },
        "board_identity": ident,
        "network": job.model.describe(),
        "deployment": dep.metadata(),
        "programming": {key: p.metadata() for key, p in job.layer_programming.items()},
        "num_points": len(job.times) * len(job.modes) * job.n_batches,
        "hints": {"dimensions": [(["batch"], "primary")]},
        **extra_metadata(md),
    }
    saved = {}
    for d in devices:
        saved[d] = yield from settings(d)
    evaluation = {
        "time": derived("time", 0.0, "s"),
        "elapsed": derived("elapsed", 0.0, "s"),
        "compensation": derived("compensation", ""),
    }
    for k in scores(job.reference, job.y, job.reference, job.kind):
        evaluation[k] = derived(k, 0.0, SCORE_UNITS.get(k, ""))
    evaluated = Figures("evaluation", evaluation.values())

    @bpp.subs_decorator(EventProgress())
    @bpp.run_decorator(md=start)
    def run() -> Plan:
        summary: dict[str, Any] = {}
        units: dict[str, str] = {}
        if job.programming is not None:
            yield from program_cores(job.programming, stream="program")
            t0 = yield from board_clock(board)
            maps = yield from verify(board, job.programming)
            figures = programming_summary(job.programming, maps)
            summary.update({f"program_{k}": v for k, v in figures.items()})
            units.update({f"program_{k}": u for k, u in summary_units(figures).items()})
        else:
            t0 = yield from board_clock(board)
        yield from checkpoint()
        yield from on_chip(job.backend, dep.calibrate(job.X_cal))
        if tune:
            report = yield from on_chip(job.backend, tune_steps(dep, job.X_cal))
            for i, r in report.items():
                summary.update({f"tune_layer{i}_{k}": v for k, v in r.items()})
        software = scores(job.reference, job.y, job.reference, job.kind)
        summary.update({f"software_{k}": v for k, v in software.items()})
        for t in job.times:
            yield from checkpoint()
            now = yield from wait_until(board, t0 + t)
            for mode in job.modes:
                yield from on_chip(job.backend, dep.compensate_drift(mode))
                outputs = yield from run_batches(job, t, now - t0, mode)
                figures = scores(outputs, job.y, job.reference, job.kind)
                summary.update({f"{time_key(t)}_{mode}_{k}": v for k, v in figures.items()})
                values = {"time": t, "elapsed": now - t0, "compensation": mode, **figures}
                record({evaluation[k]: v for k, v in values.items()})
                yield from event([evaluated], "evaluation")
        summary.update({f"utilization_{k}": v for k, v in dep.placement.utilization().items()})
        summary["digital_fraction"] = dep.digital_fraction()
        for i, al in dep.layers.items():
            summary[f"layer{i}_row_copies"] = al.row_copies
            summary[f"layer{i}_core_copies"] = max(al.copies.values())
        for k in summary:
            units.setdefault(k, SCORE_UNITS.get(k.rsplit("_", 1)[-1], ""))
        yield from summary_stream(summary, units)
        return summary

    return (yield from bpp.finalize_wrapper(run(), restore_settings(saved)))

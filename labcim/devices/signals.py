"""Signal classes and the status plumbing shared by the labcim devices.

Every driver call of a device runs in the worker thread of its instrument behind a
:class:`DriverStatus` (:class:`DriverWorker`): the RunEngine stays responsive, a driver
exception fails the status with that very exception, and a timeout fails it instead of
hanging.  The top device of a tree (``ChipTestBoard``, ``SMU``) owns the driver, its
worker and a ``run(obj, work)`` method; every part of the tree reaches it as ``self.root``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ophyd import Signal
from ophyd.signal import InternalSignal
from ophyd.status import Status
from ophyd.utils import InvalidState

from drivers.protocol import new_op_id

__all__ = ["new_op_id"]  # operation ids name the operations devices take (OperationRequest)


class DriverStatus(Status):
    """A Status whose text names the exception it failed with.

    bluesky reports a failed status as ``FailedStatus(str(status))`` in the stop
    document's ``reason``; ophyd's own text would hide the instrument's message.
    """

    def __str__(self) -> str:
        text = f"{type(self).__name__}(obj={getattr(self.obj, 'name', None)}, done={self.done})"
        if self.done and not self.success:
            exc = self.exception(timeout=0)
            text += f": {type(exc).__name__}: {exc}"
        return text

    __repr__ = __str__


class DriverTimeoutError(TimeoutError):
    """A driver call did not finish within its status timeout."""


class DriverWorker:
    """Runs the driver calls of one instrument in order, in one long-lived daemon thread.

    A thread (and an ophyd timeout thread) per status cost ~1 ms each on a busy machine,
    more than many board commands; one worker thread per instrument costs ~0.05 ms per
    call.  The instrument takes one command at a time anyway.  A watchdog thread fails a
    status whose call has not finished ``timeout`` s after it was submitted.

    Parameters
    ----------
    name : str
        Names the threads (``labcim <name>``).
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._deadlines: list[tuple[float, int, DriverStatus]] = []  # a heap
        self._order = itertools.count()  # ties of the heap
        self._watch = threading.Condition()
        self._closed = False
        for target, suffix in ((self._serve, ""), (self._watchdog, " watchdog")):
            threading.Thread(target=target, name=f"labcim {name}{suffix}", daemon=True).start()

    def run(
        self,
        obj: Any,
        work: Callable[[], None],
        *,
        timeout: float | None,
        after: Callable[[], None] | None = None,
    ) -> DriverStatus:
        """Queue ``work``; the returned status finishes when it returns.

        Parameters
        ----------
        obj : ophyd object
            The object the status belongs to.
        work : callable
            Driver call(s) and the signal updates they produce.
        timeout : float or None
            Time (s) after submission at which the status fails with
            :class:`DriverTimeoutError`, a backstop: the drivers bound every exchange
            with their own timeouts.
        after : callable, optional
            Run after ``work`` whether it failed or not, before the status finishes
            (e.g. refreshing link-health signals so suspenders see them first).
        """
        status = DriverStatus(obj)
        if timeout is not None:
            entry = (time.monotonic() + timeout, next(self._order), status, timeout)
            with self._watch:
                while self._deadlines and self._deadlines[0][2].done:  # keep the heap small
                    heapq.heappop(self._deadlines)
                heapq.heappush(self._deadlines, entry)
                if self._deadlines[0] is entry:  # the watchdog sleeps until a later one
                    self._watch.notify()
        self._jobs.put((status, work, after))
        return status

    def close(self) -> None:
        """Stop both threads once the queued calls are done."""
        self._jobs.put(None)
        with self._watch:
            self._closed = True
            self._watch.notify()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            status, work, after = job
            error: Exception | None = None
            try:
                work()
            except Exception as exc:
                error = exc
            if after is not None:
                after()
            # The status may have timed out meanwhile; its outcome is then already final.
            with contextlib.suppress(InvalidState):
                if error is None:
                    status.set_finished()
                else:
                    status.set_exception(error)

    def _watchdog(self) -> None:
        heap = self._deadlines
        while True:
            with self._watch:
                while not self._closed:
                    while heap and heap[0][2].done:
                        heapq.heappop(heap)
                    if heap and heap[0][0] <= time.monotonic():
                        _, _, status, timeout = heapq.heappop(heap)
                        break
                    self._watch.wait(heap[0][0] - time.monotonic() if heap else None)
                else:
                    return
            with contextlib.suppress(InvalidState):  # outside the lock: callbacks run here
                status.set_exception(
                    DriverTimeoutError(f"{status}: driver call unfinished after {timeout} s")
                )


class OperationRequest(Signal):
    """Operation id (u64, 0 = none) that the parent's next ``trigger()`` carries.

    A plan sets it before each trigger with a fresh id (``plans.stubs.trigger_wait``);
    the trigger takes it and resets it to 0, so one set names one operation.  When
    bluesky replays the set and the trigger after a pause, the same id reaches the
    instrument, which recognizes the operation instead of doing it again.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(value=0, **kwargs)

    def set(self, value: Any, **kwargs: Any) -> DriverStatus:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{self.name}: an operation id is an integer, got {value!r}")
        if not 0 <= value < 2**64:
            raise ValueError(f"{self.name}: operation id {value} is outside [0, 2**64)")
        super().put(int(value))
        return finished_status(self)

    def put(self, value: Any, **kwargs: Any) -> None:
        self.set(value).wait(0)

    def take(self) -> int:
        """The id for the trigger starting now; the next trigger has none unless set."""
        value = int(self.get())
        if value:
            super().put(0)
        return value


def finished_status(obj: Any) -> DriverStatus:
    """A status that is already done and successful (for settings stored locally)."""
    status = DriverStatus(obj)
    status.set_finished()
    return status


class StopRequest(threading.Event):
    """The cancel flag of one device operation, set by ``stop(success=...)``.

    Driver loops check it between frames or sleeps (``drivers.board.Cancel``).
    ``success`` follows ophyd's ``stop``: True (a pause or suspension, after which
    bluesky replays the operation) finishes the stopped operation's status; False fails
    it with the driver's abort error.
    """

    def __init__(self) -> None:
        super().__init__()
        self.success = False

    def stop(self, success: bool) -> None:
        """Ask the operation to stop."""
        self.success = success
        self.set()


class StopRequests:
    """The stop flags of an instrument's operations that are queued or running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[StopRequest] = set()

    def new(self) -> StopRequest:
        """A flag for an operation about to be queued, stoppable from now on."""
        request = StopRequest()
        with self._lock:
            self._pending.add(request)
        return request

    def done(self, request: StopRequest) -> None:
        """Forget the flag of a finished operation."""
        with self._lock:
            self._pending.discard(request)

    def stop_all(self, success: bool) -> None:
        """Stop every queued or running operation."""
        with self._lock:
            pending = list(self._pending)
        for request in pending:
            request.stop(success)

    def run(
        self,
        worker: DriverWorker,
        obj: Any,
        work: Callable[[StopRequest], None],
        aborted: type[Exception],
        **options: Any,
    ) -> DriverStatus:
        """Queue ``work(request)`` on ``worker`` (``options`` as for `DriverWorker.run`).

        If the operation is stopped, ``work`` raises ``aborted``; its status then
        finishes or fails as the stop's ``success`` says.
        """
        request = self.new()

        def job() -> None:
            try:
                work(request)
            except aborted:
                if not request.success:
                    raise
            finally:
                self.done(request)

        return worker.run(obj, job, **options)


SHOWN = 64
"""Largest `ReadingArray` whose repr shows its values (numpy formats that many fast)."""


class ReadingArray(np.ndarray):
    """An array reading as documents carry it: a view of the same data, a short repr.

    event-model validates every event with jsonschema, whose check of the event's
    ``additionalProperties`` formats ``repr(doc["data"])`` even when the event is valid;
    numpy's repr of a 1 MB conductance map costs 0.3-0.5 ms, of an MVM event's four
    arrays ~1 ms, more than the rest of the event.  This repr names shape and dtype only,
    for arrays of more than :data:`SHOWN` elements (smaller ones show their values).
    Everything else is numpy's: ``np.asarray`` gives the plain array back, and what is
    computed from a reading (``g.mean(axis=0)``, ``g * 2``, ``g.max()``) is a plain
    array or scalar, so a user's callback sees its results as numpy shows them.
    """

    def __repr__(self) -> str:
        if self.size <= SHOWN:
            return repr(self.view(np.ndarray))
        return f"ReadingArray(shape={self.shape}, dtype={self.dtype})"

    def __array_wrap__(
        self, array: np.ndarray, context: Any = None, return_scalar: bool = False
    ) -> Any:
        plain = array.view(np.ndarray)
        return plain[()] if return_scalar else plain


def plain(value: Any) -> Any:
    """``value``, a `ReadingArray` as a plain ndarray (a view: nothing is copied)."""
    return value.view(np.ndarray) if isinstance(value, ReadingArray) else value


class UnitSignal(Signal):
    """Signal with a physical unit in ``describe()`` and a source naming labcim.

    An array value is read as a `ReadingArray` view.

    Parameters
    ----------
    units : str
        Physical unit (e.g. ``"uS"``, ``"uA"``, ``"V"``, ``"s"``); empty if none.
    """

    def __init__(self, *, units: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def read(self) -> dict[str, dict[str, Any]]:
        out = super().read()
        reading = out[self.name]
        if type(reading["value"]) is np.ndarray:
            reading["value"] = reading["value"].view(ReadingArray)
        return out

    @property
    def source_name(self) -> str:
        return f"labcim:{self.name}"

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        if isinstance(self.get(), bool):  # ophyd would call it an integer
            desc[self.name]["dtype"] = "boolean"
        if self.units:
            desc[self.name]["units"] = self.units
        return desc


class Readback(InternalSignal, UnitSignal):
    """A value measured by the device's last driver call; users cannot write it."""

    def update(self, value: Any) -> None:
        """Store a new value (device-internal) and notify subscribers."""
        self.put(value, internal=True)


class ArrayReadback(Readback):
    """An array readback whose ``describe()`` states its dtype and shape.

    The owning device declares the shape of the next reading (:meth:`declare`) whenever
    it changes, so a descriptor written before a trigger is already right.  Until that
    reading the value is a placeholder of that shape: NaN for floats, 0 for integers (a
    read-only broadcast view, which costs no memory).

    Parameters
    ----------
    dtype : str
        numpy dtype of the values.
    """

    def __init__(self, *, dtype: str, **kwargs: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.shape: tuple[int, ...] = (0,)
        super().__init__(value=self._placeholder(), **kwargs)

    def _placeholder(self) -> np.ndarray:
        fill = np.nan if self.dtype.kind == "f" else 0
        return np.broadcast_to(np.array(fill, self.dtype), self.shape)

    def declare(self, shape: tuple[int, ...]) -> None:
        """Set the shape of the next reading; the current value becomes a placeholder."""
        self.shape = tuple(shape)
        self.update(self._placeholder())

    def describe(self) -> dict[str, dict[str, Any]]:
        key = {
            "source": self.source_name,
            "dtype": "array",
            "shape": list(self.shape),
            "dtype_numpy": self.dtype.str,
        }
        if self.units:
            key["units"] = self.units
        return {self.name: key}


class Setting(UnitSignal):
    """A value written to an instrument; its readback is what the instrument took.

    ``put`` writes synchronously; ``set`` checks the value at once (a bad value raises
    before anything is sent) and writes in a worker thread of the root device, so the
    status fails with the instrument's exception.  Subclasses implement :meth:`write`.

    Parameters
    ----------
    units : str
        Physical unit reported in ``describe()``.
    """

    def __init__(self, *, units: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def write(self, value: Any) -> None:
        """Send ``value`` to the instrument and :meth:`update` the readback(s)."""
        raise NotImplementedError

    def update(self, value: Any) -> None:
        """Store the value the instrument acknowledged and notify subscribers."""
        super().put(value)

    def put(self, value: Any, **kwargs: Any) -> None:
        self.check_value(value)
        self.write(value)

    def set(self, value: Any, *, timeout: float | None = None, **kwargs: Any) -> DriverStatus:
        self.check_value(value)
        return self.root.run(self, lambda: self.write(value), timeout=timeout)


class ArraySetting(UnitSignal):
    """An array argument of the next trigger, kept locally and checked when set.

    ``set`` and ``put`` run :meth:`check_value` on the value as given (so a bad value
    raises before anything is sent), then store a copy converted to ``dtype``.  Owners
    follow changes with ``subscribe`` (e.g. to declare the shapes of the next reading).

    Parameters
    ----------
    dtype : str
        numpy dtype the value is stored as.
    ndim : int
        Number of dimensions of the value.
    """

    def __init__(self, *, dtype: str, ndim: int, **kwargs: Any) -> None:
        self.dtype = np.dtype(dtype)
        super().__init__(value=np.empty((0,) * ndim, self.dtype), **kwargs)

    def put(self, value: Any, **kwargs: Any) -> None:
        self.check_value(value)
        super().put(np.array(value, self.dtype), force=True, **kwargs)

    def set(self, value: Any, **kwargs: Any) -> DriverStatus:
        self.put(value)
        return finished_status(self)

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        desc[self.name].update(
            dtype="array", shape=list(np.shape(self.get())), dtype_numpy=self.dtype.str
        )
        return desc

"""Suspending a run while the board's link is degraded, and probing it until it heals.

bluesky's threshold suspenders watch a signal's subscriptions; a board's link-health
signals (``board.fpga.retry_fraction``, ``mean_rtt``, ``last_rtt``) are refreshed after
every command, so a degrading link trips them while a plan runs.  While a run is
suspended nothing talks to the board, so nothing would refresh them again and the run
would stay suspended with the link long healed.  `LinkSuspender` probes the link itself
while suspended (``board.fpga.trigger()``: one clock read), every ``probe`` s, until the
signal is back under its resume threshold; probes that fail on a bad link are expected
and count in the statistics like any other command.  After ``give_up`` s suspended it
ends the run with `LinkDegradedError`, a board fault that stops a campaign.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Mapping
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.suspenders import SuspendCeil
from bluesky.utils import FailedStatus, Msg, short_uid

from drivers.board import BoardError, LinkError
from labcim.plan_args import ArgumentError, Check, Interval, NonNegative, Number

#: Link-health signals of ``board.fpga`` a suspender may watch, with their units.
LINK_SIGNALS = {"retry_fraction": "", "mean_rtt": "s", "last_rtt": "s"}
#: Default time between link probes while suspended, s.
PROBE = 1.0
#: Default time waited once the link is clean, s.
SLEEP = 5.0


class LinkDegradedError(LinkError):
    """The link stayed degraded for longer than a `LinkSuspender`'s ``give_up`` time."""


class LinkSuspender(SuspendCeil):
    """Suspend while a link-health signal of a board is above ``above``; probe the link.

    Parameters
    ----------
    signal : ophyd.Signal
        One of ``board.fpga``'s `LINK_SIGNALS`, e.g. ``board.fpga.retry_fraction``.
    above : float
        Suspend when the signal rises above this (a fraction, or s for round trips).
    resume_below : float, optional
        Resume once it is at or below this (default ``above``); in [0, ``above``].
    probe : float
        Time between link probes while suspended, s (> 0).
    sleep : float
        Time to wait once the link is clean before the run goes on, s (>= 0).
    give_up : float, optional
        Suspended for longer than this (s), the run ends with `LinkDegradedError`;
        default: wait as long as it takes.

    Raises
    ------
    ValueError
        Naming the parameter and its allowed range (`labcim.plan_args.ArgumentError`).

    Examples
    --------
    >>> RE.install_suspender(LinkSuspender(board.fpga.retry_fraction, 0.2))  # doctest: +SKIP
    """

    def __init__(
        self,
        signal: Any,
        above: float,
        *,
        resume_below: float | None = None,
        probe: float = PROBE,
        sleep: float = SLEEP,
        give_up: float | None = None,
    ) -> None:
        link = getattr(signal, "parent", None)
        if getattr(link, "refresh_link", None) is None or signal.attr_name not in LINK_SIGNALS:
            raise ValueError(
                f"signal: expected a link-health signal of a board's fpga "
                f"({', '.join(LINK_SIGNALS)}); got {signal!r}"
            )
        options = link_options(
            {"above": above, "resume_below": resume_below, "probe": probe, "sleep": sleep}
            | ({} if give_up is None else {"give_up": give_up}),
            signal.attr_name,
        )
        self.probe, self.give_up = options["probe"], options.get("give_up")
        self._link = link
        super().__init__(
            signal,
            options["above"],
            resume_thresh=options["resume_below"],
            sleep=options["sleep"],
            pre_plan=self._probe_until_clean,
            tripped_message=f"probing the link every {self.probe:g} s",
        )

    def __repr__(self) -> str:  # bluesky's shows the pre-plan, a method of this object
        give_up = "" if self.give_up is None else f", give_up={self.give_up:g}"
        return (
            f"LinkSuspender({self._sig.name}, above={self._suspend_thresh:g}, "
            f"resume_below={self._resume_thresh:g}, probe={self.probe:g}, "
            f"sleep={self._sleep:g}{give_up})"
        )

    def __call__(self, value: Any, **kwargs: Any) -> None:
        """The signal's subscription: bluesky's, except while no plan runs.

        A rise while the RunEngine is idle or paused would make the next plan wait at its
        start with nobody probing; it is left to the next plan's commands to measure the
        link again, and trip the suspender then.
        """
        if not self.tripped and self.RE is not None and not self.RE.state.is_running:
            return
        super().__call__(value, **kwargs)

    def _probe_until_clean(self) -> Generator[Msg, Any, None]:
        """The suspension's pre-plan: probe until the callback sees the signal clean.

        The time suspended is counted as the probes' own: each ``probe`` s of sleep
        and the time each clock read took on the link.  Time the operator kept the run
        paused meanwhile (Ctrl-C during the suspension, then resume) is not suspension.
        """
        suspended = 0.0
        while self.tripped:
            if self.give_up is not None and suspended > self.give_up:
                raise LinkDegradedError(
                    f"{self._sig.name} = {self._sig.get():.3g} still above "
                    f"{self._resume_thresh:g} after {self.give_up:g} s suspended"
                )
            yield from bps.sleep(self.probe)
            suspended += self.probe + (yield from self._probe())

    def _probe(self) -> Generator[Msg, Any, float]:
        """One clock read of the board; the time (s) it took on the link.  A read lost on
        a bad link is expected: it counts in the statistics all the same."""
        group = short_uid("probe")
        status = yield Msg("trigger", self._link, group=group)
        sent, done = time.monotonic(), []
        status.add_callback(lambda status: done.append(time.monotonic()))
        with contextlib.suppress(FailedStatus, BoardError):
            yield Msg("wait", None, group=group)
        return done[0] - sent if done else 0.0


def check_board(chip: Any, field: str) -> None:
    """Raise ValueError naming ``field`` unless ``chip`` is the URL of a board (not
    ``none``, not an SMU's VISA resource): only a board has a link to watch."""
    if not isinstance(chip, str) or chip == "none" or "::" in chip:
        raise ValueError(f"{field}: watches a board's link; chip {chip!r} is not a board")


def install(RE: Any, board: Any, section: Mapping[str, Mapping[str, float]]) -> None:
    """Install a `LinkSuspender` on ``RE`` per signal of ``section`` (`suspend_section`'s
    output), watching that signal of ``board.fpga``."""
    for name, options in section.items():
        RE.install_suspender(LinkSuspender(getattr(board.fpga, name), **options))


def suspend_section(section: Any, where: str = "suspend") -> dict[str, dict[str, float]]:
    """A ``suspend:`` section (``{signal: {above: ..., ...}, ...}``) checked: the
    `LinkSuspender` options of each signal, completed.

    Raises
    ------
    ArgumentError
        One message per mistake, each naming its field under ``where``.
    """
    if not isinstance(section, Mapping):
        raise ArgumentError(
            [f"{where}: expected a mapping of signal: {{above: ...}}; got {section!r}"]
        )
    checked, errors = {}, []
    for name, options in section.items():
        field = f"{where}.{name}"
        if name not in LINK_SIGNALS:
            errors.append(f"{field}: unknown signal; allowed: {', '.join(LINK_SIGNALS)}")
        elif not isinstance(options, Mapping):
            errors.append(f"{field}: expected a mapping such as {{above: 0.2}}; got {options!r}")
        else:
            try:
                checked[name] = link_options(options, name, f"{field}.")
            except ArgumentError as exc:
                errors += exc.errors
    if errors:
        raise ArgumentError(errors)
    return checked


def link_options(options: Mapping[str, Any], signal: str, where: str = "") -> dict[str, float]:
    """``options`` of one `LinkSuspender` of ``signal`` checked and completed.

    ``signal`` is one of `LINK_SIGNALS` (a fraction's threshold is below 1); ``where``
    prefixes the names in messages (``suspend.retry_fraction.``).

    Raises
    ------
    ArgumentError
        One message per option that is unknown or out of its range, each naming it.
    """
    known = ("above", "resume_below", "probe", "sleep", "give_up")
    errors = [
        f"{where}{name}: unknown option; allowed: {', '.join(known)}"
        for name in options
        if name not in known
    ]
    if options.get("above") is None:
        errors.append(f"{where}above: missing (suspend while the signal is above it)")
    checks = {
        "above": _Fraction() if LINK_SIGNALS[signal] == "" else Number(positive=True),
        "probe": Number(positive=True),
        "sleep": NonNegative("s"),
        "give_up": Number(positive=True),
    }
    checked: dict[str, float] = {"probe": PROBE, "sleep": SLEEP}
    for name, check in checks.items():
        if options.get(name) is not None:
            try:
                checked[name] = check(f"{where}{name}", options[name])
            except ValueError as exc:
                errors.append(str(exc))
    if "above" in checked:
        resume = options.get("resume_below")
        try:
            checked["resume_below"] = (
                checked["above"]
                if resume is None
                else Interval(0.0, checked["above"])(f"{where}resume_below", resume)
            )
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ArgumentError(errors)
    return {name: checked[name] for name in known if name in checked}


class _Fraction(Check):
    """A threshold of a fraction: one in (0, 1) can be crossed both ways."""

    def __call__(self, name: str, value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not (ok and 0 < value < 1):
            raise ValueError(f"{name} = {value!r} must be a fraction in (0, 1)")
        return float(value)

"""``connect(url)``: a ready ``ChipTestBoard``; ``connect_smu(resource)``: a ready ``SMU``.

Board URLs:

- ``sim://PRESET?cores=N&seed=S&rows=R&cols=C&devices_per_polarity=D&model=M.yaml`` -- a
  fresh simulated chip (``mock_hw.chip.PRESETS``, with the device model of a model file
  from ``labcim calibrate``) behind the simulated board, in this process, through the
  real client and wire codec;
- ``sim:///abs/path/chip.npz`` or ``sim://./rel/path.npz`` -- a saved simulated chip;
- anything else is a pyserial URL: ``socket://127.0.0.1:PORT``, ``serial:///dev/ttyUSB0``,
  ``/dev/pts/3`` ...
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl

import pyvisa

from drivers.board import BoardClient, InProcessTransport
from drivers.smu import SMUError, SourceMeter
from labcim.devices.board import ChipTestBoard, board_class
from labcim.devices.smu import SMU
from labcim.model_file import ModelFileError, load_model
from mock_hw.board_server import BoardHandler
from mock_hw.chip import PRESETS, Chip

SIM_SCHEME = "sim://"

SIM_QUERY: dict[str, Callable[[str], Any]] = {
    "cores": int,
    "rows": int,
    "cols": int,
    "devices_per_polarity": int,
    "seed": int,
    "model": lambda path: load_model(path).chip_options(),
}
"""The one place where ``sim://PRESET?...`` query keys map to ``Chip.from_preset``
keywords, with the type each value is parsed as; a parser that returns a dict gives
several keywords (``model=PATH.yaml``: the ``model_params`` and ``periphery`` of a model
file, `labcim.model_file`)."""

_CLIENT_OPTIONS = ("timeout", "retries")


def connect(
    url: str, *, name: str = "board", status_timeout: float = 60.0, **options: Any
) -> ChipTestBoard:
    """Open the board at ``url`` and return its device, identified and configured.

    Parameters
    ----------
    url : str
        ``sim://...`` or a pyserial URL (see the module docstring).
    name : str
        Device name, the prefix of every signal name.
    status_timeout : float
        Backstop (s) of every status (see ``ChipTestBoard``).
    **options
        ``timeout`` (s, per reply) and ``retries`` of the board client.

    Raises
    ------
    ValueError
        A malformed URL, an unknown or mistyped query option, an unknown option.
    drivers.board.LinkError
        The board cannot be reached.
    """
    unknown = sorted(set(options) - set(_CLIENT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {list(_CLIENT_OPTIONS)}")
    if url.startswith(SIM_SCHEME):
        return connect_sim_chip(sim_chip(url), name=name, status_timeout=status_timeout, **options)
    return _board(BoardClient.open(url, **options), None, name, status_timeout)


def connect_sim_chip(
    chip: Chip, *, name: str = "board", status_timeout: float = 60.0, **options: Any
) -> ChipTestBoard:
    """The board of an existing simulated ``chip`` (in this process), as `connect` gives it.

    For a chip built in Python rather than named by a URL, e.g. the chip a replay
    rebuilds from a run's record.  ``options`` as for `connect`.
    """
    client = BoardClient(InProcessTransport(BoardHandler(chip)), **options)
    return _board(client, chip, name, status_timeout)


def _board(
    client: BoardClient, chip: Chip | None, name: str, status_timeout: float
) -> ChipTestBoard:
    try:
        cls = board_class(client.info["chip"]["cores"])
        return cls(client, name=name, sim_chip=chip, status_timeout=status_timeout)
    except BaseException:
        client.close()
        raise


def sim_chip(url: str) -> Chip:
    """The simulated chip a ``sim://`` URL names: a fresh preset or a saved file.

    Raises
    ------
    ValueError
        Unknown preset (naming the presets), unknown query key (naming the allowed
        ones), a value that does not parse, or a query on a saved chip.
    """
    target, _, query = url.removeprefix(SIM_SCHEME).partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ValueError(f"{url}: malformed query ({exc})") from None
    if target in PRESETS:
        return Chip.from_preset(target, **_sim_options(url, pairs))
    if "/" in target or target.endswith(".npz"):
        if pairs:
            raise ValueError(f"{url}: a saved chip takes no query options")
        return Chip.load(target)
    raise ValueError(
        f"{url}: {target!r} is neither a chip preset {sorted(PRESETS)} nor a path "
        "(sim:///abs/chip.npz, sim://./rel/chip.npz)"
    )


def _sim_options(url: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, text in pairs:
        if key not in SIM_QUERY:
            raise ValueError(f"{url}: unknown option {key!r}; allowed: {sorted(SIM_QUERY)}")
        if key in options:
            raise ValueError(f"{url}: option {key!r} given twice")
        parse = SIM_QUERY[key]
        try:
            value = parse(text)
        except ModelFileError as exc:
            raise ValueError(f"{url}: {exc}") from None
        except ValueError:
            raise ValueError(f"{url}: {key}={text!r} is not of type {parse.__name__}") from None
        if isinstance(value, dict):
            options.update(value)
        else:
            options[key] = value
    return options


SMU_MODEL_GROUP = "labcim.smu_models"
"""Entry-point group of SMU driver classes (``drivers.smu.SourceMeter`` subclasses): the
project registers its own there, a lab's package adds its models the same way."""


def smu_models() -> dict[str, type[SourceMeter]]:
    """SMU driver classes by every name they answer to (entry-point name and ``names``).

    Raises
    ------
    TypeError
        An entry point that is not a ``SourceMeter`` subclass (naming it).
    ValueError
        Two classes claiming one name (naming both).
    """
    models: dict[str, type[SourceMeter]] = {}
    for entry in entry_points(group=SMU_MODEL_GROUP):
        cls = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, SourceMeter)):
            raise TypeError(f"{SMU_MODEL_GROUP} entry point {entry.name} = {entry.value} is not "
                            "a drivers.smu.SourceMeter subclass")  # fmt: skip
        for name in {entry.name.lower(), *cls.names}:
            if models.setdefault(name, cls) is not cls:
                raise ValueError(
                    f"SMU model name {name!r} is claimed by {models[name].__qualname__} and "
                    f"{cls.__qualname__}"
                )
    return models


def detect_smu(resource: str, *, timeout: float = 2000.0, **visa: Any) -> type[SourceMeter]:
    """The driver class whose ``idn_pattern`` the instrument's ``*IDN?`` reply matches.

    Parameters
    ----------
    resource : str
        VISA resource string.
    timeout : float
        VISA timeout of the query (ms).
    **visa
        ``backend`` or ``resource_manager``, as for the drivers.

    Raises
    ------
    drivers.smu.SMUError
        The instrument cannot be reached, or no known model matches its reply (the
        message gives the reply and the known models).
    """
    rm = visa.get("resource_manager") or pyvisa.ResourceManager(visa.get("backend", "@py"))
    try:
        session = rm.open_resource(
            resource, read_termination="\n", write_termination="\n", timeout=timeout
        )
        try:
            idn = session.query("*IDN?").strip()
        finally:
            session.close()
    except (pyvisa.Error, OSError, ValueError) as exc:
        raise SMUError(f"{resource}: cannot ask *IDN? to detect the SMU model ({exc})") from exc
    models = set(smu_models().values())
    for cls in sorted(models, key=lambda c: c.__qualname__):
        if re.match(cls.idn_pattern, idn):
            return cls
    known = ", ".join(sorted(c.model for c in models))
    raise SMUError(
        f"{resource}: *IDN? answered {idn!r}, which no known SMU model matches ({known}); "
        "name the model (driver=..., labcim run --smu-model)"
    )


def connect_smu(
    resource: str,
    *,
    name: str = "smu",
    driver: type[SourceMeter] | str | None = None,
    current_limit: float = 100e-6,
    status_timeout: float = 600.0,
    **options: Any,
) -> SMU:
    """Open the SMU at a VISA ``resource`` and return its device, reset to a known state.

    The instrument is reset (output off, 0 V) and its current limit set, so every
    readback starts true.

    Parameters
    ----------
    resource : str
        VISA resource string, e.g. ``"TCPIP::127.0.0.1::5025::SOCKET"``.
    name : str
        Device name, the prefix of every signal name.
    driver : type or str, optional
        The ``drivers.smu.SourceMeter`` model class, or a model name (``"2450"``,
        ``"b2900"``, ``"b1500a"``, or any name of `smu_models`).  By default the model is
        detected from the instrument's ``*IDN?`` reply (`detect_smu`).
    current_limit : float
        Current limit (A) set after the reset.
    status_timeout : float
        Backstop (s) of every status; sweeps are bounded by the driver's own timeouts.
    **options
        Passed to the driver: ``max_voltage`` (V), ``max_current`` (A), ``timeout`` (ms),
        ``backend``, ``resource_manager`` (and model-specific ones such as the B1500A's
        ``channel``).

    Raises
    ------
    ValueError
        An unknown model name (naming the known ones).
    drivers.smu.SMUError
        The instrument cannot be reached or identified; a setting outside a limit
        (``SMULimitError``), before anything is sent.
    """
    if driver is None:
        visa = {k: options[k] for k in ("backend", "resource_manager") if k in options}
        driver = detect_smu(resource, timeout=options.get("timeout", 2000.0), **visa)
    elif isinstance(driver, str):
        models = smu_models()
        if driver.lower() not in models:
            raise ValueError(f"SMU model {driver!r} is not one of {sorted(models)}")
        driver = models[driver.lower()]
    smu = driver(resource, **options)
    try:
        smu.reset()
        smu.set_current_limit(current_limit)
        return SMU(smu, name=name, current_limit=current_limit, status_timeout=status_timeout)
    except BaseException:
        smu.close()
        raise

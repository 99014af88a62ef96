"""``connect(url)``: a ready ``ChipTestBoard``; ``connect_smu(resource)``: a ready ``SMU``.

Board URLs (docs/devices.md has the table, with every option):

- ``sim://PRESET?cores=N&seed=S&rows=R&cols=C&devices_per_polarity=D&model=M.yaml`` -- a
  fresh simulated chip (``mock_hw.chip.PRESETS``, with the device model of a model file
  from ``labcim calibrate``) behind the simulated board, in this process, through the
  real client and wire codec;
- ``sim:///abs/path/chip.npz`` or ``sim://./rel/path.npz`` -- a saved simulated chip;
- ``serial:///dev/ttyUSB0?baudrate=115200&parity=E...`` -- a local serial port with its
  line settings (``drivers.urlhandler.protocol_serial``);
- any other pyserial URL: ``socket://127.0.0.1:PORT``, ``rfc2217://HOST:PORT``,
  ``loop://``..., or a bare device path (``/dev/pts/3``, ``COM3``: default settings).

``timeout`` and ``retries`` of the board client may be given in the query of any URL but
``sim://`` and a bare path, e.g. ``socket://127.0.0.1:5000?timeout=10``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pyvisa
import serial

from drivers.board import BoardClient, InProcessTransport
from drivers.smu import SMUError, SourceMeter
from drivers.urlhandler import protocol_serial
from labcim.devices.board import ChipTestBoard, board_class
from labcim.devices.smu import SMU
from labcim.model_file import load_model
from labcim.registry import load_classes
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

CLIENT_OPTIONS: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "retries": int,
    "max_frame": int,
}
"""Options of the board client (``drivers.board.BoardClient``): keywords of `connect`, or
query keys of a pyserial URL, with the type a query value is parsed as."""


def connect(
    url: str, *, name: str = "board", status_timeout: float = 60.0, **options: Any
) -> ChipTestBoard:
    """Open the board at ``url`` and return its device, identified and configured.

    Parameters
    ----------
    url : str
        ``sim://...``, ``serial://...`` or any pyserial URL or device path (see the
        module docstring).
    name : str
        Device name, the prefix of every signal name.
    status_timeout : float
        Backstop (s) of every status (see ``ChipTestBoard``).
    **options
        ``timeout`` (s, per reply), ``retries`` and ``max_frame`` (bytes, the largest
        frame payload it sends or asks for) of the board client; also accepted in the
        URL's query (not both).

    Raises
    ------
    ValueError
        A malformed URL, an unknown URL scheme, an unknown or mistyped query option or
        serial setting, an unknown option (before anything is opened).
    drivers.board.LinkError
        The board cannot be reached.
    """
    unknown = sorted(set(options) - set(CLIENT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {list(CLIENT_OPTIONS)}")
    if url.startswith(SIM_SCHEME):
        return connect_sim_chip(sim_chip(url), name=name, status_timeout=status_timeout, **options)
    link, in_url = board_link(url)
    if twice := sorted(set(in_url) & set(options)):
        raise ValueError(f"{url}: {', '.join(twice)} given both in the URL and as an option")
    return _board(BoardClient.open(link, **in_url, **options), None, name, status_timeout)


def board_link(url: str) -> tuple[str, dict[str, Any]]:
    """A board URL other than ``sim://`` checked, and split into what pyserial opens and
    the board client's options (`CLIENT_OPTIONS`) from its query.

    Nothing is opened: a URL that passes may still name a port that is not there.

    Raises
    ------
    ValueError
        An empty URL, a scheme pyserial has no handler for (naming those it has), an
        unknown client option or serial setting, a value that does not parse.
    """
    if not url:
        raise ValueError("empty board URL")
    if "://" not in url:
        return url, {}  # a device path, opened at pyserial's default settings
    scheme = url.split("://", 1)[0].lower()
    if scheme not in pyserial_schemes():
        raise ValueError(
            f"{url}: unknown URL scheme {scheme!r}; board URLs: sim://, "
            + ", ".join(f"{s}://" for s in sorted(pyserial_schemes()))
            + ", or a device path"
        )
    base, _, query = url.partition("?")
    kept, client = [], {}
    for key, text in parse_qsl(query, keep_blank_values=True):
        if key not in CLIENT_OPTIONS:
            kept.append((key, text))
            continue
        if key in client:
            raise ValueError(f"{url}: option {key!r} given twice")
        try:
            client[key] = value = CLIENT_OPTIONS[key](text)
        except ValueError:
            value = -1
        if value < 0 or (key == "timeout" and not value > 0):
            allowed = "a number of seconds > 0" if key == "timeout" else "an integer >= 0"
            raise ValueError(f"{url}: {key}={text!r} must be {allowed}")
    if scheme == protocol_serial.SCHEME:
        if not base.removeprefix(url[: len(scheme) + 3]):
            raise ValueError(f"{url}: no port, e.g. serial:///dev/ttyUSB0 or serial://COM3")
        try:
            protocol_serial.parse_options(kept, protocol_serial.SETTINGS)
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
    return base + ("?" + urlencode(kept) if kept else ""), client


def pyserial_schemes() -> set[str]:
    """URL schemes :func:`serial.serial_for_url` has a handler for (``serial``, ``socket``,
    ``rfc2217``, ``loop``, ...), found as pyserial finds them."""
    schemes = set()
    for package in serial.protocol_handler_packages:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            schemes |= {
                p.stem.removeprefix("protocol_") for p in Path(folder).glob("protocol_*.py")
            }
    return schemes


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
    target, options = parse_sim_url(url)
    return Chip.from_preset(target, **options) if target in PRESETS else Chip.load(target)


def parse_sim_url(url: str) -> tuple[str, dict[str, Any]]:
    """The preset (or saved chip's path) and the ``Chip.from_preset`` keywords of a
    ``sim://`` URL, checked; no chip is built (a model file is read and checked).

    Raises
    ------
    ValueError
        As `sim_chip`.
    """
    target, _, query = url.removeprefix(SIM_SCHEME).partition("?")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ValueError(f"{url}: malformed query ({exc})") from None
    if target in PRESETS:
        return target, _sim_options(url, pairs)
    if "/" in target or target.endswith(".npz"):
        if pairs:
            raise ValueError(f"{url}: a saved chip takes no query options")
        return target, {}
    raise ValueError(
        f"{url}: {target!r} is neither a chip preset ({', '.join(sorted(PRESETS))}) nor a "
        "path (sim:///abs/chip.npz, sim://./rel/chip.npz)"
    )


def check_url(url: str) -> None:
    """Check an instrument URL as far as can be done without opening anything.

    ``sim://`` URLs: preset, query keys and values, model file; VISA resources (with
    ``::``): the resource syntax; any other: `board_link`.  ``--dry-run`` of campaigns
    and ``labcim run`` call it before connecting.

    Raises
    ------
    ValueError
        Naming what is wrong and what is allowed.
    """
    if url.startswith(SIM_SCHEME):
        parse_sim_url(url)
    elif "::" in url:
        from pyvisa.rname import InvalidResourceName, parse_resource_name

        try:
            parse_resource_name(url)
        except InvalidResourceName as exc:
            raise ValueError(f"{url}: not a VISA resource ({exc})") from None
    else:
        board_link(url)


def _sim_options(url: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        parsed = protocol_serial.parse_options(pairs, SIM_QUERY, "option")
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None
    options: dict[str, Any] = {}
    for key, value in parsed.items():  # a parser that returns a dict gives several keywords
        options.update(value if isinstance(value, dict) else {key: value})
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
    for entry_name, cls in load_classes(SMU_MODEL_GROUP, "SMU model", SourceMeter).items():
        for name in {entry_name.lower(), *cls.names}:
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

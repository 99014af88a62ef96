"""``connect(url)``: a ready ``ChipTestBoard``; ``connect_smu(resource)``: a ready ``SMU``.

Board URLs (docs/devices.md has the table, with every option) are opened through the one
registry of `labcim.transports`:

- ``sim://PRESET?cores=N&seed=S&rows=R&cols=C&devices_per_polarity=D&model=M.yaml`` -- a
  fresh simulated chip behind the simulated board, in this process, through the real
  client and wire codec; ``sim:///abs/path/chip.npz`` or ``sim://./rel/path.npz`` -- a
  saved simulated chip (the ``sim`` scheme of `labcim.twin.sim_url`);
- ``serial:///dev/ttyUSB0?baudrate=115200&parity=E...`` -- a local serial port with its
  line settings (``drivers.urlhandler.protocol_serial``);
- any other pyserial URL: ``socket://127.0.0.1:PORT``, ``rfc2217://HOST:PORT``,
  ``loop://``..., or a bare device path (``/dev/pts/3``, ``COM3``: default settings);
- ``arc2://ID?...`` -- an ArC TWO board driven by pyarc2 (`labcim.arc2`), ``sim=1`` its
  simulated instrument;
- a scheme a lab's package registers in the ``labcim.transports`` entry-point group.

``timeout``, ``retries`` and ``max_frame`` of the board client may be given in the query
of a pyserial URL, e.g. ``socket://127.0.0.1:5000?timeout=10``, or as keywords.
"""

from __future__ import annotations

import re
from typing import Any

import pyvisa

from drivers.board import BoardClient
from drivers.smu import SMUError, SourceMeter
from labcim.chip_identity import ChipIdentity
from labcim.devices.board import ChipTestBoard, board_class
from labcim.devices.smu import SMU
from labcim.registry import load_classes
from labcim.transports import CLIENT_OPTIONS, scheme_of


def connect(
    url: str, *, name: str = "board", status_timeout: float = 60.0, **options: Any
) -> ChipTestBoard:
    """Open the board at ``url`` and return its device, identified and configured.

    Parameters
    ----------
    url : str
        ``sim://...``, ``serial://...``, any pyserial URL or device path, or a URL of a
        registered scheme (see the module docstring).
    name : str
        Device name, the prefix of every signal name.
    status_timeout : float
        Backstop (s) of every status (see ``ChipTestBoard``).
    **options
        ``timeout`` (s, per reply), ``retries`` and ``max_frame`` (bytes, the largest
        frame payload it sends or asks for) of the board client; also accepted in a
        pyserial URL's query (not both).

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
    scheme = scheme_of(url)
    in_url = scheme.check_url(url)
    if twice := sorted(set(in_url) & set(options)):
        raise ValueError(f"{url}: {', '.join(twice)} given both in the URL and as an option")
    # A board reached through a vendor library (arc2://) gives its client, not a stream.
    if (open_client := getattr(scheme, "open_client", None)) is not None:
        client = open_client(url, **in_url, **options)
    else:
        client = BoardClient(scheme.open_url(url), **in_url, **options)
    return board_device(client, name=name, status_timeout=status_timeout)


def board_device(
    client: BoardClient, *, name: str = "board", status_timeout: float = 60.0
) -> ChipTestBoard:
    """The device of the board behind an open ``client``, which it owns from now on.

    Raises
    ------
    labcim.chip_identity.IdentityError
        An IDENTIFY reply without what labcim needs (the client is closed then).
    """
    try:
        identity = ChipIdentity.from_identify(client.info)
        cls = board_class(identity.n_cores)
        return cls(client, identity, name=name, status_timeout=status_timeout)
    except BaseException:
        client.close()
        raise


def check_url(url: str) -> None:
    """Check an instrument URL as far as can be done without opening anything.

    VISA resources (with ``::``): the resource syntax; board URLs: what their scheme
    checks (`labcim.transports.scheme_of`: a ``sim://`` URL's preset, query keys and
    values and model file; a pyserial URL's settings and client options).
    ``--dry-run`` of campaigns and ``labcim run`` call it before connecting.

    Raises
    ------
    ValueError
        Naming what is wrong and what is allowed.
    """
    if "::" in url:
        from pyvisa.rname import InvalidResourceName, parse_resource_name

        try:
            parse_resource_name(url)
        except InvalidResourceName as exc:
            raise ValueError(f"{url}: not a VISA resource ({exc})") from None
    else:
        scheme_of(url).check_url(url)


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
        extra = next(
            (e for kind, e in _VISA_EXTRAS.items() if resource.upper().startswith(kind)), ""
        )
        hint = f'; pip install "labcim[{extra}]"' if extra and "install" in str(exc) else ""
        raise SMUError(
            f"{resource}: cannot ask *IDN? to detect the SMU model ({exc}{hint})"
        ) from exc
    models = set(smu_models().values())
    for cls in sorted(models, key=lambda c: c.__qualname__):
        if re.match(cls.idn_pattern, idn):
            return cls
    known = ", ".join(sorted(c.model for c in models))
    raise SMUError(
        f"{resource}: *IDN? answered {idn!r}, which no known SMU model matches ({known}); "
        "name the model (driver=..., labcim run --smu-model)"
    )


_VISA_EXTRAS = {"USB": "usb", "GPIB": "gpib"}
"""labcim's extra that gives pyvisa-py what it needs for a resource type (its prefix)."""


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

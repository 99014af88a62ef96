"""Startup code of a station's RE Worker (``start-re-manager --startup-module`` this).

``labcim station`` starts the RE Manager with this module as its startup code and the
station's settings in the JSON file named by ``$LABCIM_STATION_CONFIG`` (``name``,
``chip``, ``results``, ``suspend``: the `labcim.suspenders.LinkSuspender` options per
link-health signal, installed on ``RE``).  Queueserver imports it each time the worker
environment is opened and takes its namespace: ``RE`` (a RunEngine writing every run to
the station's results directory and reporting progress to `StationMonitor`), the board
(named by its device name, ``board`` or ``smu``), one plan per ``labcim.plans`` entry
point (`queue_plans`) and the functions ``labcim_status`` and ``labcim_figure``.
Everything else is kept out of the namespace (queueserver would list any generator
function as a plan and any device as a device).
"""

#: Environment variable naming the station's settings file.
CONFIG_ENV = "LABCIM_STATION_CONFIG"


def _namespace() -> dict:
    import json
    import os
    from pathlib import Path
    from typing import Any

    from bluesky import RunEngine

    from labcim import suspenders
    from labcim.engine import connect_chip
    from labcim.hdf5 import HDF5Writer
    from labcim.stations.monitor import StationMonitor
    from labcim.stations.process import die_with_parent
    from labcim.stations.queue_plans import queue_plans

    die_with_parent()  # the RE Manager died: so does this run, left incomplete on disk
    config = json.loads(Path(os.environ[CONFIG_ENV]).read_text())
    results = Path(config["results"])
    RE = RunEngine({})
    RE.record_interruptions = True  # pauses and suspensions in the run
    RE.subscribe(HDF5Writer(results))
    monitor = StationMonitor(config["name"], results)
    RE.subscribe(monitor)
    instrument = connect_chip(config["chip"])
    device = instrument.name
    suspenders.install(RE, instrument, config.get("suspend", {}))

    def labcim_status() -> dict[str, Any]:
        """Progress of the running run and figures of the last (`StationMonitor.status`)."""
        return monitor.status()

    def labcim_figure() -> dict[str, Any]:
        """The last successful run's figure as base64 PNG (`StationMonitor.figure`)."""
        return monitor.figure()

    return {
        "RE": RE,
        device: instrument,
        "labcim_status": labcim_status,
        "labcim_figure": labcim_figure,
        **queue_plans(device, Path.cwd()),
    }


globals().update(_namespace())
del _namespace

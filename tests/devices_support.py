"""Shared by the device tests: a document collector and an ophyd compliance check."""

from __future__ import annotations

from typing import Any

import event_model
import numpy as np
from ophyd import Device

JSON_DTYPES = {"number": (float, int), "integer": (int,), "string": (str,), "boolean": (bool,)}


class Collector:
    """Keeps every document a RunEngine emits."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for n, d in self.docs if n == kind]

    def events(self) -> list[dict[str, Any]]:
        """Events, with event pages unpacked."""
        out = self.of("event")
        for page in self.of("event_page"):
            out.extend(event_model.unpack_event_page(page))
        return out


def check_value(key: str, data_key: dict[str, Any], value: Any) -> None:
    """``value`` has the dtype and shape its data key declares."""
    shape = tuple(data_key["shape"])
    if data_key["dtype"] == "array":
        arr = np.asarray(value)
        assert arr.shape == shape, (key, arr.shape, shape)
        assert arr.dtype == np.dtype(data_key["dtype_numpy"]), (key, arr.dtype)
    else:
        assert shape == (), key
        assert isinstance(value, JSON_DTYPES[data_key["dtype"]]), (key, type(value))
        if data_key["dtype"] != "boolean":
            assert not isinstance(value, bool), key


def check_compliance(device: Device) -> None:
    """ophyd protocol checks of ``device`` after it was triggered once."""
    desc, read = device.describe(), device.read()
    assert list(desc) == list(read)
    conf_desc, conf = device.describe_configuration(), device.read_configuration()
    assert list(conf_desc) == list(conf)
    for d, r in ((desc, read), (conf_desc, conf)):
        for key, data_key in d.items():
            check_value(key, data_key, r[key]["value"])
            assert isinstance(r[key]["timestamp"], float)
    assert set(device.hints.get("fields", [])) <= set(read)
    for field in device.hints.get("fields", []):
        assert desc[field]["dtype"] in ("number", "integer"), field  # BEC can plot it
    names = [walk.item.name for walk in device.walk_signals()]
    assert len(names) == len(set(names))
    assert all(name.startswith(device.name + "_") for name in names)
    # event-model validates the data keys (dtype, shape, dtype_numpy) of a descriptor.
    run = event_model.compose_run()
    run.compose_descriptor(
        data_keys=desc,
        name="primary",
        configuration={
            device.name: {
                "data": {k: v["value"] for k, v in conf.items()},
                "timestamps": {k: v["timestamp"] for k, v in conf.items()},
                "data_keys": conf_desc,
            }
        },
    )

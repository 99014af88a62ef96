"""The core temperature setting through the wire: IDENTIFY describes it, SET_CONFIG takes
it, the devices age faster while hot (Arrhenius, docs/physics.md)."""

import numpy as np
import pytest

from drivers.board import BoardRefusedError
from labcim import connect


def test_temperature_is_a_documented_setting_that_ages_the_devices():
    board = connect("sim://pcm-small?seed=2")
    client = board.client
    try:
        info = client.identify()["chip"]["temperature"]
        assert info == {
            "unit": "K",
            "min": 233.15,
            "max": 398.15,
            "reference": 300.0,
            "setting": "core configuration field temperature",
        }
        assert client.get_config(0)["temperature"] == 300.0
        assert client.set_config(1, temperature=358.15)["temperature"] == 358.15
        with pytest.raises(
            BoardRefusedError, match=r"temperature = 500 is outside \[233.15, 398.15\] K"
        ):
            client.set_config(1, temperature=500)
        assert client.get_config(1)["temperature"] == 358.15  # nothing changed
        # fresh devices (fully SET at t = 0) of a hot core drift further in a day
        start = [client.read_conductance(c, 0, 64).astype(float) for c in (0, 1)]
        client.wait_until(client.clock() + 86400.0)
        ratio = [
            np.median(client.read_conductance(c, 0, 64) / g)
            for c, g in zip((0, 1), start, strict=True)
        ]
        assert ratio[1] < ratio[0] < 1.0
    finally:
        board.close()

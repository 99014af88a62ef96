"""ophyd protocol compliance of every device: keys, dtypes/shapes, names, staging."""

from __future__ import annotations

import numpy as np
import pytest
from devices_support import check_compliance

from labcim.connection import connect
from labcim.devices import ChipTestBoard, CIMCore


@pytest.fixture(scope="module")
def board():
    dev = connect("sim://rram-small?cores=3&rows=32&cols=16&seed=4", name="b1")
    yield dev
    dev.close()


def test_board_and_fpga(board):
    assert isinstance(board, ChipTestBoard)
    board.trigger().wait(5)
    check_compliance(board)
    check_compliance(board.fpga)
    assert board.fpga.hints == {"fields": ["b1_fpga_clock"]}
    config = board.read_configuration()
    assert config["b1_chip"]["value"] == "rram-small"
    assert config["b1_n_cores"]["value"] == 3
    assert config["b1_fpga_firmware"]["value"]


def test_every_core_before_and_after_trigger(board):
    for i, core in enumerate(board.cores):
        assert isinstance(core, CIMCore) and core.name == f"b1_core{i}"
        check_compliance(core)  # empty arrays before the first reading
        core.mvm.inputs.set(np.ones((3, 32), int)).wait()
        core.trigger().wait(5)
        check_compliance(core)
        assert core.describe()[f"b1_core{i}_conductance_map"]["shape"] == [2, 32, 16]
        assert core.read()[f"b1_core{i}_mvm_codes"]["value"].shape == (3, 16)
    for part in (board.core0.program, board.core0.conductance, board.core0.mvm):
        check_compliance(part)


def test_names_are_unique_and_predictable(board):
    names = [walk.item.name for walk in board.walk_signals()]
    assert len(names) == len(set(names))
    dotted = {walk.dotted_name: walk.item.name for walk in board.walk_signals()}
    assert dotted["core2.mvm.outputs"] == "b1_core2_mvm_outputs"
    assert dotted["core0.conductance.map"] == "b1_core0_conductance_map"
    assert dotted["fpga.retry_fraction"] == "b1_fpga_retry_fraction"
    assert all(name == "b1_" + key.replace(".", "_") for key, name in dotted.items())


def test_stage_unstage_restores_configuration(board):
    core = board.core2
    before = board.client.get_config(2)
    core.stage_sigs.update(adc_bits=5, read_mode="1-phase", read_voltage=0.15)
    core.stage()
    staged = board.client.get_config(2)
    assert (staged["adc_bits"], staged["read_mode"], staged["read_voltage"]) == (5, "1-phase", 0.15)
    core.unstage()
    assert board.client.get_config(2) == before
    assert core.adc_bits.get() == before["adc_bits"]
    core.stage_sigs.clear()
    board.stage()
    board.unstage()
    assert board.client.get_config(2) == before


def test_readbacks_refuse_writes(board):
    from ophyd.signal import InternalSignalError

    with pytest.raises(InternalSignalError):
        board.core0.conductance.mean.put(1.0)
    with pytest.raises(InternalSignalError):
        board.fpga.retries.set(0)

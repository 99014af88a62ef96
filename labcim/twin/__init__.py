"""The digital twin: the simulated chip of ``mock_hw`` used as a model of a chip.

Everything in labcim that knows the simulator is here, and this package is the only part
of ``labcim/`` that imports ``mock_hw`` (tests/test_import_rules.py checks it):

- `sim_url`: ``sim://`` URLs, parsed once for ``labcim.connect``, ``labcim sim serve``
  and replay, and the in-process link to the simulated board (the ``sim`` scheme of the
  ``labcim.transports`` entry-point group, loaded only when such a URL is opened);
- `chips`: the simulated chip a recorded run is replayed on, rebuilt from what the
  run's IDENTIFY reply recorded (``board_identity.sim_chip``);
- `calibrate`: the simulator's device model and periphery fitted to recorded runs;
- `model_file`: the model-file format, what `calibrate` writes and ``model=`` reads;
- `serve`: the simulated board and SMU of ``labcim sim serve`` / ``labcim sim smu``;
- `simchip`: the inference engine run directly on a simulated chip (no link).

Nothing here is imported by ``import labcim``: a lab that drives real boards never loads
the simulator.
"""

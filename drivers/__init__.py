"""Hardware protocols with no bluesky/ophyd dependency: board codec, board client, SMU.

A lab may use this package on its own; it never imports ``labcim``, ``plans`` or
``mock_hw``.
"""

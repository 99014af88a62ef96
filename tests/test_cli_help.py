"""Issue 14: ``labcim run PLAN --help`` gives the plan's arguments (types, defaults, units,
one line each from its signature and docstring); ``labcim run --list`` a line per plan."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from labcim.cli.run import parameter_docs, plan_help
from labcim.registry import available_plans, get_plan

LABCIM = [sys.executable, "-m", "labcim.cli"]


def test_plan_help_lists_every_argument_with_type_default_and_units():
    text = plan_help("tdp_program", get_plan("tdp_program"))
    assert text.startswith("usage: labcim run tdp_program --chip URL --out FILE")
    assert re.search(r"^  weights : ndarray, required\n      Weight matrix, finite;", text, re.M)
    tolerance = r"^  tolerance : float or null, default None\n      Allowed \|summed .*\(uS\)"
    assert re.search(tolerance, text, re.M)
    assert re.search(r"^  settle : float, default 1.0\n      Wait \(s\)", text, re.M)
    for name in ("cores", "strategy", "max_iterations", "scaling", "md"):
        assert re.search(rf"^  {name} : ", text, re.M), name
    assert "``" not in text and ":func:" not in text


def test_every_plan_has_its_arguments_documented():
    for name in available_plans():
        plan = get_plan(name)
        documented = parameter_docs(plan.__doc__ or "")
        text = plan_help(name, plan)
        for arg in list(documented)[1:]:  # the first is the board / SMU
            assert documented[arg], (name, arg)
            assert re.search(rf"^  {arg} : ", text, re.M), (name, arg)


@pytest.mark.slow
def test_help_and_list_on_the_command_line():
    done = subprocess.run(
        [*LABCIM, "run", "iv_sweep", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    v_set = r"^  v_set : float, required\n      Peak voltage of the SET branch \(V\)"
    assert re.search(v_set, done.stdout, re.M)
    done = subprocess.run([*LABCIM, "run", "--list"], capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    plans = list(available_plans())
    assert [line.split()[0] for line in lines[: len(plans)]] == plans
    assert all(len(line.split()) > 2 for line in lines[: len(plans)])  # a summary on each
    done = subprocess.run(
        [*LABCIM, "run", "tdp_porgram", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "unknown plan 'tdp_porgram'" in done.stderr

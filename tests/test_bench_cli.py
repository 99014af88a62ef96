"""``labcim bench`` and ``scripts/bench_table.py`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from benchmarks import harness
from labcim.cli import main

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "bench_table.py"
RESULTS = ROOT / "benchmarks" / "results.json"


@pytest.mark.slow  # a second or more: kept out of the fast tier
def test_bench_runs_the_named_benchmarks_into_one_table_and_json(tmp_path, capfd):
    assert main(["--quiet", "bench", "nope"]) == 2
    assert "unknown nope; available: chip, hdf5" in capfd.readouterr().out
    assert main(["--quiet", "bench", "--threads", "0", "hdf5"]) == 2
    assert "--threads = 0; allowed: 1 or more" in capfd.readouterr().out
    target = tmp_path / "bench.json"
    assert main(["--quiet", "bench", "--quick", "--json", str(target), "hdf5"]) == 0
    caveat, _, table = capfd.readouterr().out.partition("labcim bench without --quick).\n")
    assert "not comparable with" in caveat  # issue 14: a quick run says so
    table = table.splitlines()
    assert table[0].split()[:4] == ["benchmark", "value", "min-max", "unit"]
    data = json.loads(target.read_text())
    head, records = data["header"], data["records"]
    assert head["quick"] is True and head["threads"] == harness.DEFAULT_THREADS
    assert len(records) == len(table) - 1 and records[0]["name"].startswith("hdf5 writer")
    ratio = records[0]
    assert ratio["unit"] == "x" and ratio["low"] <= ratio["value"] <= ratio["high"]
    assert ratio["repeats"] == 3 and ratio["threads"] in (harness.DEFAULT_THREADS, None)
    assert "same filters and flushes" in ratio["compared_with"]
    targets = [r["target"] for r in records if r["target"]]
    assert targets and all("not comparable, --quick" in t for t in targets)
    # numpy's huge-page advice: off unless asked for, and the header says which
    known = harness.huge_page_advice_on() is not None
    assert head["huge_page_advice"] is (False if known else None)
    assert main(["--quiet", "bench", "--quick", "--huge-pages", "--json", str(target), "hdf5"]) == 0
    assert json.loads(target.read_text())["header"]["huge_page_advice"] is (True if known else None)


@pytest.mark.slow  # two CLI runs (the refusal comes before any benchmark runs)
def test_bench_json_never_replaces_a_file_it_did_not_write(tmp_path, capfd):
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}\n')
    assert main(["--quiet", "bench", "--quick", "--json", str(foreign), "hdf5"]) == 2
    out = capfd.readouterr().out
    assert out.strip().splitlines() == [
        f"labcim bench: --json {foreign}: the file there is not a labcim bench --json file; "
        "it is left as it is (give a new path)"
    ]
    assert foreign.read_text() == '{"mine": 1}\n'
    assert main(["--quiet", "bench", "--quick", "--json", str(tmp_path), "hdf5"]) == 2
    assert f"--json {tmp_path}: not a file" in capfd.readouterr().out
    # A folder that is not there is found before the benchmarks run, not after.
    missing = tmp_path / "results" / "bench.json"
    assert main(["--quiet", "bench", "--json", str(missing), "hdf5"]) == 2
    assert capfd.readouterr().out.strip() == (  # this line alone: no table, nothing ran
        f"labcim bench: --json {missing}: the folder {missing.parent} does not exist"
    )
    # An earlier run's file is labcim's: written again.
    ours = tmp_path / "bench.json"
    harness.write_json(ours, harness.header(1, True, (0.0, 0.0, 0.0)), [])
    assert main(["--quiet", "bench", "--quick", "--json", str(ours), "hdf5"]) == 0
    assert harness.read_json(ours)[1][0].name.startswith("hdf5 writer")


def _table_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_bench_table_prints_the_markdown_of_a_json_file_and_fills_a_readme(tmp_path):
    head = harness.header(1, False, (0.5, 0.4, 0.3))
    t = harness.interleave({"a": lambda: 3.0, "b": lambda: 2.0}, 3)
    path = tmp_path / "bench.json"
    harness.write_json(path, head, [t.ratio("a / b", "a", "b", "b", "<= 1.3")])
    out = _table_script(str(path))
    assert out.returncode == 0, out.stderr
    assert out.stdout == harness.markdown_table(*harness.read_json(path)) + "\n"
    assert "| a / b | 1.5x | 1.5-1.5x | b | <= 1.3 |" in out.stdout
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- bench-table -->\nold figures\n<!-- /bench-table -->\n\nend\n")
    assert _table_script(str(path), "--readme", str(readme)).returncode == 0
    assert readme.read_text() == (
        f"# x\n\n<!-- bench-table -->\n{out.stdout}<!-- /bench-table -->\n\nend\n"
    )


def test_bench_table_says_what_is_wrong_in_one_line(tmp_path):
    missing = _table_script(str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "none.json" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    out = _table_script(str(bad))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"bench_table: {bad}: not a labcim bench --json file "
        "(list indices must be integers or slices, not str)"
    ]
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    good = tmp_path / "good.json"
    harness.write_json(good, harness.header(1, False, (0.0, 0.0, 0.0)), [])
    out = _table_script(str(good), "--readme", str(readme))
    assert out.returncode == 2 and "no <!-- bench-table --> ... <!-- /bench-table -->" in out.stderr
    assert readme.read_text() == "no markers\n"


def test_the_readme_table_is_the_one_made_from_the_committed_results():
    """The README's figures come from benchmarks/results.json (a full labcim bench run)."""
    head, records = harness.read_json(RESULTS)
    assert head["quick"] is False
    names = {r.name for r in records}
    benchmarks = ["mvm 1024x256", "hdf5 writer", "digits MLP", "tdp_program", "64 cores"]
    for benchmark in [*benchmarks, "queued one by one"]:
        assert any(benchmark in n for n in names), benchmark
    assert {r.threads for r in records if "all non-idealities" in r.name} == {1, 2}
    readme = (ROOT / "README.md").read_text()
    table = harness.markdown_table(head, records)
    assert f"<!-- bench-table -->\n{table}\n<!-- /bench-table -->" in readme


@pytest.mark.slow
def test_every_benchmark_runs_quick_from_the_command_line(tmp_path):
    """Each bench_*.py still runs against the current code, with a record per figure."""
    target = tmp_path / "quick.json"
    out = subprocess.run(
        [sys.executable, "-m", "labcim.cli", "--quiet", "bench", "--quick", "--json", str(target)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,  # as from a checkout: benchmarks/ is not installed
    )
    assert out.returncode == 0, out.stderr[-3000:]
    head, records = harness.read_json(target)
    assert head["quick"] is True
    prefixes = ["mvm 1024x256 @", "hdf5 writer", "digits MLP", "mvm 1024x256 int8", "tdp_program"]
    prefixes += ["mvm_characterization", "tdp pcm-hermes 4 cores", "station start"]
    for prefix in prefixes:
        assert any(r.name.startswith(prefix) for r in records), prefix
    timed = [r for r in records if r.repeats > 1]
    assert timed and all(r.low <= r.value <= r.high for r in timed)
    assert all("not comparable" in r.target for r in records if r.target)


@pytest.mark.slow
def test_the_profile_commands_of_the_performance_plan_still_run(tmp_path):
    """docs/performance.md's commands (those needing no dev tool) run on today's code."""
    script = ROOT / "scripts" / "profile_bench.py"
    for args, expect in [
        (["stages", "tdp", "--repeats", "1"], "| + wire codec |"),
        (["messages", "mvm"], "bluesky.utils.Plan formatted the stack"),
    ]:
        out = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert expect in out.stdout


def test_outside_a_checkout_bench_says_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", "bench", "--dir", str(tmp_path / "nowhere"), "hdf5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"labcim bench: no benchmarks in {tmp_path / 'nowhere'}: they are")
    assert len(err.splitlines()) == 1


def test_the_install_holds_the_four_packages_of_the_layout_and_not_benchmarks():
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_packages(where=ROOT, include=config["packages"]["find"]["include"])
    assert {name.split(".")[0] for name in found} == {"labcim", "drivers", "plans", "mock_hw"}

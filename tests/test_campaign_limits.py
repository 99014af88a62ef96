"""Campaign files are bounded: no input makes validation slow or large."""

import re
import time
import tracemalloc

import pytest
import yaml
from campaign_helpers import plugin_fixture  # noqa: F401  (the fixture "plugin")
from results_support import cli, resource_usage

from labcim.bounded_yaml import Limits, YAMLLimitError, load_bounded
from labcim.campaign import CampaignError, load_campaign
from labcim.campaign.schema import LIMITS, MAX_STEPS

HEAD = "chip: none\nout: results\n"


def alias_bomb(levels=9, width=9):
    """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels."""
    lines = ["  a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return HEAD + "metadata:\n" + "\n".join(lines) + "\nsteps:\n  - plan: slow_count\n"


def errors_of(path):
    with pytest.raises(CampaignError) as exc:
        load_campaign(path)
    return exc.value.errors


@pytest.mark.slow
def test_an_alias_bomb_is_refused_within_a_second_and_200_mb(tmp_path, plugin):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())  # 9**9 = 387 million values once expanded
    done = cli("campaign", str(bomb), "--dry-run", env=plugin, timeout=30)
    assert done.returncode == 2
    assert f"more than the limit of {LIMITS.max_values} values" in done.stderr
    assert re.search(r"line \d+, column \d+: with its aliases expanded", done.stderr)
    # The same interpreter start and imports as refusing a missing file, plus < 1 s of
    # CPU (CPU time: a loaded machine stretches wall time, not the work done).
    base_status, _, base_cpu = resource_usage(
        "campaign", str(tmp_path / "absent.yaml"), "--dry-run", env=plugin
    )
    status, peak_kib, cpu = resource_usage("campaign", str(bomb), "--dry-run", env=plugin)
    assert base_status == 2 and cpu - base_cpu < 1, (cpu, base_cpu)
    assert status == 2 and peak_kib < 200 * 1024, f"{peak_kib / 1024:.0f} MiB"  # was 9-12 GB


def test_the_bomb_is_refused_before_anything_is_built(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    started = time.thread_time()  # CPU of this thread: load stretches only wall time
    (error,) = errors_of(path)
    assert time.thread_time() - started < 1
    assert re.match(r"beyond the limits of a campaign file: line \d+, column \d+: ", error)
    for place in ("args", "over"):  # wherever the aliases are used
        text = alias_bomb(5, 12).replace("metadata:", "defs:") + f"    {place}: {{n: *a4}}\n"
        path.with_name(place).write_text(text)
        assert "more than the limit" in errors_of(path.with_name(place))[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1, *a]\n", "alias *a lies inside the node it refers to (a recursive structure)"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than the limit of 32 levels"),
        (
            "a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: " + "[" * 15 + "*a" + "]" * 15 + "\n",
            "nested deeper than the limit of 32 levels",
        ),
        ("a: 1" + ":5" * 60_000 + "\n", "a number of 120001 characters, over the limit of 100"),
        ("a: " + "1" * 5000 + "\n", "a number of 5000 characters, over the limit of 100"),
    ],
    ids=["recursive alias", "deep", "deep through an alias", "base 60 integer", "long integer"],
)
def test_each_limit_is_named_with_its_line(text, message):
    with pytest.raises(YAMLLimitError, match=r"line \d+, column \d+: ") as exc:
        load_bounded(text)
    assert message in str(exc.value)


def test_within_the_limits_yaml_loads_as_safe_load_does():
    text = "a: &x {k: [1, 2.5, 1:30, 0x1f]}\nb: *x\nc: {<<: *x, d: 2019-01-01, e: !!binary aGk=}\n"
    data = load_bounded(text)
    assert data["b"] is data["a"] and data["a"] == {"k": [1, 2.5, 90, 31]}
    assert data["c"]["k"] == [1, 2.5, 90, 31] and data["c"]["e"] == b"hi"
    exactly = "[" + ", ".join(["0"] * 99) + "]"  # 100 values with the list itself
    assert len(load_bounded(exactly, Limits(max_values=100))) == 99
    with pytest.raises(YAMLLimitError):
        load_bounded(exactly, Limits(max_values=99))


def test_a_file_over_the_size_limit_is_refused_by_its_size(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "metadata: {note: '" + "x" * LIMITS.max_bytes + "'}\n")
    (error,) = errors_of(path)
    size = path.stat().st_size
    assert error.endswith(f": {size} bytes, over the limit of {LIMITS.max_bytes} bytes")
    with pytest.raises(YAMLLimitError, match=f"{LIMITS.max_bytes + 1} bytes, over"):
        load_bounded(b" " * (LIMITS.max_bytes + 1))  # e.g. read from a pipe


def test_a_million_step_product_is_refused_naming_the_entry(tmp_path, plugin):
    values = ", ".join(map(str, range(1, 1001)))
    path = tmp_path / "huge.yaml"
    path.write_text(
        HEAD + f"steps:\n  - plan: slow_count\n    over: {{n: [{values}], delay: [{values}]}}\n"
    )
    # Refused from the sizes alone: the million steps are never made (they would take
    # hundreds of MB), which the allocation peak shows whatever the machine's load.
    tracemalloc.start()
    try:
        (error,) = errors_of(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated"
    assert error == (
        f"steps[1].over: expands to 1000000 steps (1000 x 1000); a campaign has at most "
        f"{MAX_STEPS} steps (the limit)"
    )


def test_the_step_limit_counts_every_entry(tmp_path, plugin):
    hundred = ", ".join(map(str, range(1, 101)))
    path = tmp_path / "steps.yaml"
    entry = f"  - plan: slow_count\n    over: {{n: [{hundred}], delay: [{hundred}]}}\n"
    path.write_text(HEAD + "steps:\n" + entry)  # exactly the limit
    assert len(load_campaign(path).steps) == MAX_STEPS == 10_000
    path.write_text(HEAD + "steps:\n" + entry + "  - plan: slow_count\n" * 3)
    (error,) = errors_of(path)  # said once, by the entry that passes the limit
    assert error == (
        f"steps[2], after 10000 steps before it; a campaign has at most {MAX_STEPS} steps "
        "(the limit)"
    )


def test_yaml_errors_are_one_line_with_the_place(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "steps: [\n")
    (error,) = errors_of(path)
    assert error.startswith("not valid YAML: line 4, column 1: ") and "\n" not in error


def test_a_key_written_twice_is_refused_with_both_lines_but_a_merge_may_be_overridden():
    with pytest.raises(yaml.YAMLError, match=r"key 'out' given twice \(first on line 1\)"):
        load_bounded("out: a.h5\nid: x\nout: b.h5\n")
    with pytest.raises(yaml.YAMLError, match=r"key 'reads' given twice"):
        load_bounded("steps:\n  - {plan: conductance_map, args: {reads: 2, reads: 5}}\n")
    # YAML's merge: an explicit key after <<: overrides the merged one
    merged = load_bounded("base: &b {n: 1, delay: 0.1}\nstep:\n  <<: *b\n  delay: 0.5\n")
    assert merged["step"] == {"n": 1, "delay": 0.5}

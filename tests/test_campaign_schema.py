"""Campaign files: validation names every bad field before anything runs; expansion."""

import numpy as np
import pytest
from campaign_helpers import plugin_fixture  # noqa: F401  (the fixture "plugin")

from labcim.campaign import CampaignError, load_campaign
from labcim.cli import main

GOOD = """\
id: w7-c3
chip: none
out: results
metadata: {operator: ada, wafer: W7, chip_id: C3}
on_failure: continue
steps:
  - plan: program
    args: {weights: {file: w.npz, key: w}, tolerance: 0.02}
  - plan: slow_count
    args: {n: 2, delay: 0}
    over: {cores: [0, 3], mode: [fast, careful]}
  - plan: slow_count
    over: {cores: [[0, 1], [2]]}
"""


def write(tmp_path, text, name="campaign.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path):
    with pytest.raises(CampaignError) as exc:
        load_campaign(path)
    return exc.value.errors


def test_expansion_is_the_product_of_over_lists_in_order(tmp_path, plugin):
    np.savez(tmp_path / "w.npz", w=np.arange(6.0).reshape(2, 3))
    campaign = load_campaign(write(tmp_path, GOOD))
    assert campaign.id == "w7-c3" and campaign.on_failure == "continue"
    assert campaign.out == tmp_path / "results"
    assert [s.key for s in campaign.steps] == [
        "01-program",
        "02-slow_count[cores=0,mode=fast]",
        "02-slow_count[cores=0,mode=careful]",
        "02-slow_count[cores=3,mode=fast]",
        "02-slow_count[cores=3,mode=careful]",
        "03-slow_count[cores=[0,1]]",
        "03-slow_count[cores=[2]]",
    ]
    assert [s.index for s in campaign.steps] == [1, 2, 3, 4, 5, 6, 7]
    program, first = campaign.steps[0], campaign.steps[1]
    np.testing.assert_array_equal(program.args["weights"], np.arange(6.0).reshape(2, 3))
    assert first.args == {"n": 2, "delay": 0.0, "cores": [0], "mode": "fast"}
    assert isinstance(first.args["delay"], float)  # converted to the annotation
    assert campaign.steps[5].args == {"cores": [0, 1]}
    assert len({s.digest for s in campaign.steps}) == 7
    md = campaign.step_metadata(first)
    assert md["operator"] == "ada" and md["step_key"] == first.key and md["step_count"] == 7


def test_default_id_is_a_hash_of_the_file(tmp_path, plugin):
    text = "chip: none\nout: r\nsteps: [{plan: slow_count}]\n"
    a = load_campaign(write(tmp_path, text, "a.yaml")).id
    assert a == load_campaign(write(tmp_path, text, "b.yaml")).id
    assert a != load_campaign(write(tmp_path, text + "# edited\n", "c.yaml")).id


def test_the_issues_mistakes_are_each_named_and_nothing_runs(tmp_path, plugin, capsys):
    path = write(
        tmp_path,
        "out: results\n"
        "steps:\n"
        "  - plan: no_such_plan\n"
        "  - plan: slow_count\n"
        "    args: {n: three}\n",
    )
    assert main(["campaign", str(path)]) == 2
    err = capsys.readouterr().err
    assert "chip: missing" in err
    assert "steps[1].plan: unknown plan 'no_such_plan'; available plans:" in err
    assert "slow_count" in err.split("available plans:")[1]
    assert "steps[2].args.n: expected int; got 'three'" in err
    assert "nothing was run" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("on_failure: skip\n", "on_failure: must be one of 'stop', 'continue'; got 'skip'"),
        ("colour: red\n", "colour: unknown field; allowed: id, chip, chip_options, out"),
        ("metadata: {uid: x}\n", "metadata.uid: reserved"),
        ("out: s\n", "not valid YAML: line 3, column 1: key 'out' given twice (first on line 1)"),
        ("metadata: {board_identity: x}\n", "metadata.board_identity: reserved"),
        ("metadata: {replay_of: x}\n", "metadata.replay_of: reserved"),
        ("metadata: {day: 2024-01-01}\n", "metadata.day: not storable as JSON"),
        ("chip: [a]\n", "chip: expected a URL string; got ['a']"),
    ],
)
def test_top_level_mistakes(tmp_path, plugin, text, message):
    body = "out: r\nsteps: [{plan: slow_count}]\n" + text
    if not text.startswith("chip"):
        body += "chip: none\n"
    assert any(e.startswith(message) for e in errors_of(write(tmp_path, body))), message


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "{plan: slow_count, args: {count: 3}}",
            "steps[1].args.count: unknown argument of slow_count; allowed: cores, n, delay, mode",
        ),
        (
            "{plan: slow_count, args: {mode: quick}}",
            "steps[1].args.mode: must be one of 'fast', 'careful'; got 'quick'",
        ),
        ("{plan: slow_count, over: {cores: 3}}", "steps[1].over.cores: expected a non-empty list"),
        ("{plan: slow_count, over: {n: [1, x]}}", "steps[1].over.n[2]: expected int; got 'x'"),
        ("{plan: slow_count, over: {n: [1, 1]}}", "steps[1].over.n: repeated values"),
        (
            "{plan: slow_count, args: {n: 1}, over: {n: [2]}}",
            "steps[1].over.n: also given in steps[1].args",
        ),
        ("{plan: program}", "steps[1].args: missing required argument 'weights' of program"),
        (
            "{plan: program, args: {weights: [[1], [2, 3]]}}",
            "steps[1].args.weights: expected an array",
        ),
        (
            "{plan: program, args: {weights: {file: missing.npy}}}",
            "steps[1].args.weights: cannot load an array from",
        ),
        ("{plan: slow_count, args: {board: 1}}", "steps[1].args.board: the board is given by"),
        ("{plan: slow_count, repeat: 2}", "steps[1].repeat: unknown field; allowed: plan, args"),
        ("{args: {}}", "steps[1].plan: missing or not a name"),
    ],
)
def test_step_mistakes(tmp_path, plugin, step, message):
    path = write(tmp_path, f"chip: none\nout: r\nsteps:\n  - {step}\n")
    errors = errors_of(path)
    assert any(e.startswith(message) for e in errors), errors


def test_missing_fields_and_bad_yaml(tmp_path, plugin):
    assert errors_of(write(tmp_path, "steps: []\n")) == [
        "chip: missing (the chip URL given to labcim.connect, or 'none')",
        "out: missing (results location (HDF5), relative to the campaign file)",
        "steps: empty; give at least one step",
    ]
    assert errors_of(write(tmp_path, "chip: [\n"))[0].startswith("not valid YAML")


def test_npz_without_key_needs_one_array(tmp_path, plugin):
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.ones(2))
    step = "{plan: program, args: {weights: {file: two.npz}}}"
    errors = errors_of(write(tmp_path, f"chip: none\nout: r\nsteps:\n  - {step}\n"))
    assert "say which with 'key'" in errors[0]


def test_dry_run_lists_the_expanded_steps(tmp_path, plugin, capsys):
    np.savez(tmp_path / "w.npz", w=np.zeros((2, 3)))
    assert main(["campaign", "--dry-run", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("campaign w7-c3: 7 steps, chip none")
    assert out[1] == "  01-program  weights=<array 2x3 float64> tolerance=0.02"
    assert out[2] == "  02-slow_count[cores=0,mode=fast]  n=2 delay=0.0 cores=[0] mode=fast"
    assert not (tmp_path / "results").exists()

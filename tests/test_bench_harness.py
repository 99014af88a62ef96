"""The benchmark harness itself: interleaving, medians and spread, BLAS threads, JSON.

No test here times anything: the trials return the seconds they are given, so what is
checked is the arithmetic and bookkeeping a reader of the figures relies on.
"""

from __future__ import annotations

import json
from itertools import count

import numpy as np
import pytest

import benchmarks.bench_hdf5
from benchmarks import harness
from benchmarks.harness import Record, interleave, timed

needs_blas = pytest.mark.skipif(
    harness.blas_threads() is None, reason="threadpoolctl finds no BLAS library under numpy"
)


def _trial(log: list[str], name: str, seconds: list[float]):
    it = iter(seconds)

    def trial() -> float:
        log.append(name)
        return next(it)

    return trial


def test_interleave_alternates_the_order_so_neither_side_always_runs_second():
    log: list[str] = []
    t = interleave(
        {"a": _trial(log, "a", [1.0, 2.0, 3.0, 4.0]), "b": _trial(log, "b", [1.0, 1.0, 2.0, 8.0])},
        4,
    )
    assert log == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert t.seconds["a"].tolist() == [1.0, 2.0, 3.0, 4.0]  # in repeat order, per side
    assert t.seconds["b"].tolist() == [1.0, 1.0, 2.0, 8.0]
    log.clear()
    interleave({n: _trial(log, n, [0.0] * 2) for n in "xyz"}, 2)
    assert log == ["x", "y", "z", "z", "y", "x"]


def test_a_ratio_is_the_median_of_per_repeat_ratios_with_their_range():
    log: list[str] = []
    # Repeat by repeat the ratio is 2, 2, 1.5, 0.5, 3: the ratio of medians (3 / 2) is not it.
    a = [2.0, 4.0, 3.0, 4.0, 9.0]
    b = [1.0, 2.0, 2.0, 8.0, 3.0]
    t = interleave({"a": _trial(log, "a", a), "b": _trial(log, "b", b)}, 5)
    r = t.ratio("a over b", "a", "b", "plain b", "<= 3")
    assert (r.value, r.low, r.high, r.repeats) == (2.0, 0.5, 3.0, 5)
    assert (r.unit, r.compared_with, r.target) == ("x", "plain b", "<= 3")
    assert t.median("a") == 4.0 and t.median("b") == 2.0
    rate = t.rate("per s", "b", 10.0, "1/s")
    assert (rate.value, rate.low, rate.high) == (5.0, 1.25, 10.0)
    d = t.duration("b's time", "b", "<= 30")
    assert (d.value, d.low, d.high, d.unit, d.target) == (2.0, 1.0, 8.0, "s", "<= 30")
    plain = t.plain("a count", 7.0, "")
    assert (plain.value, plain.low, plain.repeats, plain.threads) == (7.0, None, 1, t.threads)


def test_interleave_records_the_load_and_refuses_no_repeats(monkeypatch):
    loads = iter([(3.0, 2.0, 1.0), (5.0, 2.5, 1.1)])
    monkeypatch.setattr(harness.os, "getloadavg", lambda: next(loads))
    t = interleave({"a": lambda: 1.0}, 1)
    assert t.load == (3.0, 5.0)
    assert t.ratio("x", "a", "a", "").load == (3.0, 5.0)
    with pytest.raises(ValueError, match="repeats = 0 must be >= 1"):
        interleave({"a": lambda: 1.0}, 0)


def test_timed_calls_number_times_and_returns_seconds_per_call():
    calls = count()
    seconds = timed(lambda: next(calls), number=4)()
    assert next(calls) == 4
    assert 0.0 <= seconds < 1.0


@needs_blas
@pytest.mark.parametrize("threads", [1, 2])
def test_blas_threads_are_set_and_recorded_and_restored(threads):
    outside = harness.blas_threads()
    with harness.using_blas_threads(threads):
        assert harness.blas_threads() == threads
        t = interleave({"a": lambda: 1.0}, 1)
    assert t.threads == threads
    assert harness.blas_threads() == outside
    with pytest.raises(ValueError, match="threads = 0 must be >= 1"), harness.using_blas_threads(0):
        pass


@needs_blas
def test_interleave_applies_the_stated_count_to_libraries_that_changed_since(monkeypatch):
    from threadpoolctl import threadpool_limits

    with harness.using_blas_threads(1):
        # As a BLAS library loaded inside the block would be (scipy's, by scikit-learn).
        threadpool_limits(limits=2, user_api="blas")
        assert harness.blas_threads() == 2
        assert interleave({"a": lambda: 1.0}, 1).threads == 1

        def loads_a_library() -> float:  # a trial during which a BLAS ran with 2 threads
            threadpool_limits(limits=2, user_api="blas")
            return 1.0

        t = interleave({"a": lambda: 1.0, "b": loads_a_library}, 2)
        assert t.threads == 2  # said, not hidden
        with harness.using_blas_threads(2):
            assert harness.blas_threads() == 2
        assert harness.blas_threads() == 1


@needs_blas
@pytest.mark.parametrize("threads", [1, 2])
def test_run_benchmarks_runs_each_benchmark_under_the_stated_threads(monkeypatch, threads):
    def fake_run(quick: bool) -> list[Record]:
        t = interleave({"a": lambda: 2.0, "b": lambda: 1.0}, 3)
        return [t.ratio("fake", "a", "b", "b", "<= 1.3"), t.plain("n", 1.0, "")]

    monkeypatch.setattr(benchmarks.bench_hdf5, "run", fake_run)
    head, records, failed = harness.run_benchmarks(["hdf5"], quick=False, threads=threads)
    assert failed == [] and [r.threads for r in records] == [threads, threads]
    assert head["threads"] == threads and head["quick"] is False
    assert [b["num_threads"] for b in head["blas"]] == [threads] * len(head["blas"])
    assert records[0].target == "<= 1.3"
    _, quick, _ = harness.run_benchmarks(["hdf5"], quick=True, threads=threads)
    assert [r.target for r in quick] == ["(<= 1.3: not comparable, --quick)", ""]


def test_a_failing_benchmark_is_reported_and_the_others_still_run(monkeypatch):
    def broken(quick: bool) -> list[Record]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(benchmarks.bench_hdf5, "run", broken)
    seen = []
    _, records, failed = harness.run_benchmarks(
        ["hdf5"], quick=True, on_error=lambda name, exc: seen.append((name, str(exc)))
    )
    assert failed == ["hdf5"] and records == [] and seen == [("hdf5", "disk on fire")]
    with pytest.raises(RuntimeError, match="disk on fire"):
        harness.run_benchmarks(["hdf5"], quick=True)


def test_available_lists_every_bench_module():
    assert harness.available() == [
        "chip",
        "hdf5",
        "inference",
        "link",
        "plans",
        "program",
        "stations",
    ]


def _sample() -> tuple[dict, list[Record]]:
    t = interleave({"a": iter([2.0, 3.0, 2.5]).__next__, "b": lambda: 1.0}, 3)
    head = harness.header(2, False, (1.5, 1.2, 1.0))
    return head, [t.ratio("a / b", "a", "b", "b (1 s)", "<= 3"), t.plain("count", 5.0, "")]


def test_json_has_a_header_and_records_that_read_back_equal(tmp_path):
    head, records = _sample()
    path = tmp_path / "bench.json"
    harness.write_json(path, head, records)
    data = json.loads(path.read_text())
    assert set(data) == {"header", "records"}
    assert set(data["header"]) >= harness.HEADER_KEYS
    assert data["header"]["load_before"] == [1.5, 1.2, 1.0]
    assert data["header"]["machine"]["cpus"] >= 1
    blas = data["header"]["blas"]
    assert all({"internal_api", "version", "num_threads"} <= set(b) for b in blas)
    assert set(data["records"][0]) == {
        "name",
        "value",
        "unit",
        "compared_with",
        "target",
        "low",
        "high",
        "repeats",
        "threads",
        "load",
    }
    assert data["records"][0]["value"] == 2.5 and data["records"][0]["repeats"] == 3
    assert harness.read_json(path) == (head, records)


@pytest.mark.parametrize(
    "text", ["[]", '{"header": {}, "records": []}', "not json", '{"records": []}']
)
def test_read_json_rejects_what_bench_did_not_write(tmp_path, text):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="not a labcim bench --json file"):
        harness.read_json(path)


def test_markdown_table_says_when_and_where_and_has_a_row_per_record():
    head, records = _sample()
    lines = harness.markdown_table(head, records).splitlines()
    assert "load average (1, 5, 15 min) 1.5, 1.2, 1.0 before" in lines[0]
    assert f"numpy {np.__version__}" in lines[0] and "BLAS threads 2" in lines[0]
    assert lines[2].startswith("| benchmark | median | min-max |")
    assert lines[4] == "| a / b | 2.5x | 2-3x | b (1 s) | <= 3 | " + f"{records[0].threads} | 3 |"
    assert lines[5].startswith("| count | 5 |  |")
    assert len(lines) == 6
    quick = harness.markdown_table({**head, "quick": True}, harness.mark_quick(records))
    assert "--quick: not comparable" in quick and "(<= 3: not comparable, --quick)" in quick


@pytest.mark.parametrize(
    ("x", "text"), [(0.91234, "0.912"), (2.0, "2"), (1.5e5, "1.5e5"), (3.2e-4, "0.00032")]
)
def test_numbers_have_three_significant_digits(x, text):
    assert harness._number(x) == text


@pytest.mark.skipif(harness.huge_page_advice_on() is None, reason="numpy has no huge-page switch")
def test_benchmarks_run_without_numpys_huge_page_advice_unless_asked_and_say_so(monkeypatch):
    before = harness.huge_page_advice_on()
    seen = []

    def fake_run(quick: bool) -> list[Record]:
        seen.append(harness.huge_page_advice_on())
        return [Record("n", 1.0, "")]

    monkeypatch.setattr(benchmarks.bench_hdf5, "run", fake_run)
    head, _, _ = harness.run_benchmarks(["hdf5"], quick=True)
    assert seen == [False] and head["huge_page_advice"] is False
    assert "numpy huge-page advice off" in harness.markdown_table(head, [])
    head, _, _ = harness.run_benchmarks(["hdf5"], quick=True, huge_pages=True)
    assert seen == [False, True] and head["huge_page_advice"] is True
    assert "numpy huge-page advice on" in harness.markdown_table(head, [])
    assert harness.huge_page_advice_on() == before  # restored

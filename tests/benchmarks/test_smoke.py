"""Each benchmark runs in a tiny configuration and writes a well-formed result. Never a time: the
numbers of a loaded CI machine mean nothing; what is checked is that the benchmark still works (the
path it measures accepts and applies everything, the ceiling is measured, the file is complete)."""

from __future__ import annotations

import gc
import json
from datetime import datetime

import pytest

from tests.support.databases import backend
from tests.support.requirements import missing

REQUIRED = {"name": str, "value": (int, float), "unit": str, "ceiling": (int, float), "ratio": (int, float),
            "target": str, "machine": dict, "date": str}


def well_formed(results_dir, name: str) -> dict:
    result = json.loads((results_dir / f"{name}.json").read_text(encoding="utf-8"))
    for key, kind in REQUIRED.items():
        assert isinstance(result.get(key), kind), f"{name}.json: {key} is {result.get(key)!r}"
    assert result["name"] == name
    assert result["value"] > 0 and result["ceiling"] > 0
    assert result["ratio"] == pytest.approx(result["value"] / result["ceiling"], abs=0.002)
    assert {"cpu", "cores", "python"} <= set(result["machine"])
    datetime.strptime(result["date"], "%Y-%m-%dT%H:%M:%SZ")
    assert isinstance(result["target_met"], bool)
    return result


def test_ingest(tmp_path):
    from benchmarks import ingest

    try:
        ingest.run(count=12, backends=[backend()], results_dir=tmp_path)
    finally:
        gc.unfreeze()  # the benchmark's nodes settle as running ones do (node/ops/runtime.py); not this test run
    result = well_formed(tmp_path, "ingest")
    assert result["activities"] == 12 and result["mean_activity_bytes"] > 1000
    assert {"single/{}/batched", "single/{}/one-per-post", "dual/{}/batched"} <= {
        label.replace(backend(), "{}") for label in result["runs"]}
    for label, run in result["runs"].items():
        # every activity went through the inbox (202) and was applied by the worker
        assert run["states"] == {"applied": 12, "events": run["states"]["events"]}, label
        assert 0 < run["states"]["events"] <= 12
    # The modes the target is judged on ran several times; the run of median ratio is the one reported.
    for label in (f"single/{backend()}/batched", f"dual/{backend()}/batched"):
        repeats = result["runs"][label]["repeats"]
        assert len(repeats) == ingest.TARGET_RUNS, label
        assert result["runs"][label]["ratio"] == sorted(repeats)[(len(repeats) - 1) // 2], label
    assert result["ratios_by_backend"][backend()]["single"] == result["runs"][f"single/{backend()}/batched"]["ratio"]


def test_fanout(tmp_path):
    from benchmarks import fanout

    fanout.run(followers=6, rounds=2, results_dir=tmp_path)
    result = well_formed(tmp_path, "fanout")
    assert [round_["deliveries"] for round_ in result["rounds"]] == [6, 6]


def test_convergence(tmp_path):
    from benchmarks import convergence

    convergence.run(sizes=(3, 5), activities=3, results_dir=tmp_path)
    result = well_formed(tmp_path, "convergence")
    assert [row["nodes"] for row in result["table"]] == [3, 5]
    assert all(row["converged_after_seconds"] > 0 for row in result["table"])


def test_listing(tmp_path):
    from benchmarks import listing

    if not listing.wrk_available():
        missing("wrk", "wrk is not installed (apt-get install wrk); the listing benchmark needs it")
    listing.run(events=5000, seconds=1, backends=[backend()], results_dir=tmp_path)
    result = well_formed(tmp_path, "listing")
    run = result["runs"][backend()]
    assert run["items"] == listing.PAGE and run["app"]["non_2xx_3xx"] == 0 and run["app"]["timeouts"] == 0
    assert run["revalidated_304"]["requests"] > 0 and run["uncached"]["requests"] > 0


def test_wrk_output_is_parsed():
    from benchmarks.listing import parse_wrk

    output = """Running 1s test @ http://127.0.0.1:8000/
  2 threads and 16 connections
  Latency Distribution
     50%    1.50ms
     75%    2.00ms
     90%    3.10ms
     99%  120.00us
  1234 requests in 1.00s, 2.00MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   1234.56
Transfer/sec:      2.00MB
"""
    parsed = parse_wrk(output)
    assert parsed["requests_per_second"] == 1234.56 and parsed["requests"] == 1234
    assert parsed["p50_ms"] == 1.5 and parsed["p90_ms"] == 3.1 and parsed["p99_ms"] == 0.12
    assert parsed["non_2xx_3xx"] == 3 and parsed["timeouts"] == 2

"""The layout module's keys, and that the Athena DDL in docs/batch.md declares the row."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from station.batch.layout import (
    PARTITION_KEYS,
    LayoutError,
    OutLocation,
    parse_results_key,
    results_key,
    shard_summary_key,
    summary_key,
)
from station.batch.rows import ROW_COLUMNS

DOC = Path(__file__).resolve().parents[2] / "docs" / "batch.md"


def test_results_keys_round_trip_and_cannot_escape_their_partition():
    key = results_key("audit-l42", 3, date="2026-11-26", station="line 2/st=1", recipe="../x")
    assert key == "results/date=2026-11-26/station=line_2_st_1/recipe=x/audit-l42-3.jsonl"
    parsed = parse_results_key("prefix/deeper/" + key)
    assert parsed.partitions == {"date": "2026-11-26", "station": "line_2_st_1", "recipe": "x"}
    assert (parsed.run_id, parsed.shard) == ("audit-l42", 3)
    assert results_key("r", 0, date="2026-01-02", station="", recipe=None).count("=unknown/") == 2
    assert parse_results_key("results/date=2026-11-26/station=s/x.jsonl") is None
    assert shard_summary_key("r1", 2) == "summary/run=r1/shard=2.json"
    assert summary_key("r1") == "summary/run=r1/summary.json"
    for bad in ("", "-x", "a/b", "a--b", "x" * 101):
        with pytest.raises(LayoutError):
            results_key(bad, 0, date="2026-11-26", station="s", recipe="r")
    with pytest.raises(LayoutError):
        results_key("r", 0, date="26-11-2026", station="s", recipe="r")
    with pytest.raises(LayoutError):
        OutLocation.parse("s3://Bad_Bucket/x")
    loc = OutLocation.parse("s3://ls-results/audits/")
    assert (loc.bucket, loc.s3_key(key)) == ("ls-results", "audits/" + key)


def test_athena_ddl_declares_every_row_column_and_the_partitions():
    ddl = re.search(r"CREATE EXTERNAL TABLE \w+ \((.*?)\n\)\nPARTITIONED BY \((.*?)\)", DOC.read_text(), re.S)
    assert ddl, "docs/batch.md has no CREATE EXTERNAL TABLE"
    columns = [m.group(1) for m in re.finditer(r"^  (\w+) ", ddl.group(1), re.M)]
    partitions = [p.strip().split()[0].strip("`") for p in ddl.group(2).split(",")]
    assert tuple(partitions) == PARTITION_KEYS
    # station and recipe come from the partitions (Athena refuses a data column of the same name)
    assert columns == [c for c in ROW_COLUMNS if c not in PARTITION_KEYS]


@pytest.mark.parametrize("key", [
    "results/date=2026-11-26/station=s/recipe=r/../../../../../escape/r-0.jsonl",
    "../../outside/results/date=2026-11-26/station=s/recipe=r/r-0.jsonl",
    "a/./results/date=2026-11-26/station=s/recipe=r/r-0.jsonl",
    "a//results/date=2026-11-26/station=s/recipe=r/r-0.jsonl",
    "results/date=../station=s/recipe=r/r-0.jsonl",
    "results/date=2026-11-26/station=s/recipe=r/x/r-0.jsonl",
    "results/date=2026-11-26/station=s t/recipe=r/r-0.jsonl",
    "s3://b/../results/date=2026-11-26/station=s/recipe=r/r-0.jsonl",
])
def test_results_keys_that_leave_their_folder_are_not_results_keys(key):
    """fetch_shard downloads every results key of its shard to ``<staging>/<key>``: a key
    with '..' (or any segment a path would resolve) must not parse."""
    assert parse_results_key(key) is None


def test_results_keys_still_parse_under_a_prefix():
    key = results_key("run-1", 0, date="2026-11-26", station="s.1", recipe="r_b")
    assert parse_results_key(key).run_id == "run-1"
    assert parse_results_key(f"audits/x/{key}").partitions["station"] == "s.1"
    assert parse_results_key(f"s3://bucket/audits/{key}").shard == 0

"""batch-merge / batch-report over a local folder: two local shards merged, a torn line skipped."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from conftest import copy_images, result_rows

from station.cli import main


def test_merge_two_local_shards_with_a_torn_line(tmp_path, station_data, recorded_images, capsys):
    folder = tmp_path / "in"
    copy_images(recorded_images[:6], folder)
    out = tmp_path / "out"
    base = ["--data-dir", str(station_data), "batch", str(folder), "--model", "active", "--out", str(out),
            "--run-id", "two", "--shards", "2", "--no-spec"]
    assert main([*base, "--shard", "0"]) == 0
    # one shard only: the merge says which one is missing and fails, but writes what it has
    assert main(["--data-dir", str(station_data), "batch-merge", str(out), "--json"]) == 1
    partial = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert partial["missing_shards"] == [1] and partial["complete"] is False
    assert main([*base, "--shard", "1"]) == 0
    rows = result_rows(out)
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in folder.iterdir())
    # a shard killed mid-write leaves a torn last line: skipped and counted, not fatal
    victim = next(out.glob("results/*/*/*/two-1.jsonl"))
    with open(victim, "ab") as f:
        f.write(b'{"image_id": "half-writ')
    capsys.readouterr()
    assert main(["--data-dir", str(station_data), "batch-merge", str(out), "--run-id", "two", "--model", "active",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["complete"] and summary["shards_present"] == [0, 1]
    assert summary["images"] == summary["rows_read"] == len(rows) and summary["skipped_lines"] == 1
    assert json.loads((out / "summary/run=two/summary.json").read_text()) == summary
    html = (out / "reports/run=two/report.html").read_text(encoding="utf-8")
    HTMLParser().feed(html)
    assert f"<div>images<b>{len(rows)}</b></div>" in html
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 2 * min(8, len(rows))

    # batch-report rewrites only the report (the summary stays byte for byte)
    before = (out / "summary/run=two/summary.json").read_bytes()
    assert main(["--data-dir", str(station_data), "batch-report", str(out), "--title", "Lot 42 audit"]) == 0
    assert (out / "summary/run=two/summary.json").read_bytes() == before
    assert "<title>Lot 42 audit</title>" in (out / "reports/run=two/report.html").read_text(encoding="utf-8")


def test_merge_refuses_what_is_not_a_run(tmp_path, station_data, capsys):
    assert main(["--data-dir", str(station_data), "batch-merge", str(tmp_path)]) == 1
    assert "no batch run found" in capsys.readouterr().err
    assert main(["--data-dir", str(station_data), "batch-merge", str(tmp_path), "--run-id", "nope"]) == 1
    assert "no run nope" in capsys.readouterr().err
    assert main(["--data-dir", str(station_data), "batch-merge", str(tmp_path), "--run-id", "../x"]) == 1
    assert "run id" in capsys.readouterr().err

"""``linestation batch`` over folders, globs and the local record: rows, errors, compare."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import cv2
import numpy as np
from conftest import RECORDED, copy_images, result_rows, run_summary

from station.batch.layout import parse_results_key
from station.cli import main
from station.store.station_store import StationStore


def _corrupt_files(folder, good):
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "garbage.png").write_bytes(b"this is not an image")
    (folder / "empty.png").write_bytes(b"")
    img = cv2.imread(str(good), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "deep16.png"), img.astype(np.uint16) * 257)  # 16-bit, model is 8-bit
    cv2.imwrite(str(folder / "cropped.png"), img[:200, :300])  # wrong size
    return {"truncated", "garbage", "empty", "deep16", "cropped"}


def test_folder_with_corrupt_images_reports_them_and_inspects_the_rest(tmp_path, station_data, recorded_images, capsys):
    folder = tmp_path / "in"
    good = copy_images(recorded_images[:6], folder)
    bad = _corrupt_files(folder, good[0])
    out = tmp_path / "out"
    code = main(["--data-dir", str(station_data), "batch", str(folder), "--model", "active", "--out", str(out),
                 "--recipe", "rb", "--station", "s1", "--run-id", "r1", "--no-report", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    merged = json.loads(captured.out.strip().splitlines()[-1])
    rows = result_rows(out)
    assert sorted(r["part_id"] for r in rows) == sorted([p.stem for p in good] + list(bad))
    by_part = {r["part_id"]: r for r in rows}
    for name in bad:
        assert by_part[name]["error"].startswith("bad_image"), by_part[name]
        assert by_part[name]["decision"] == "check_capture"
    for p in good:
        r = by_part[p.stem]
        assert r["error"] is None and r["decision"] in ("pass", "reject", "review")
        assert r["spec_checked"] is True and r["calibration_version"].startswith("SIM-0001/rb@v1")
        assert r["detection"]["DetectAnomalyResult"]["IsAnomalous"] == r["is_anomalous"]
    assert merged["errors"] == len(bad) and merged["images"] == len(good) + len(bad)
    assert merged["error_kinds"] == {"bad_image": len(bad)}
    assert "image(s) complete" in captured.err and "img/s" in captured.err
    # every row sits in its partition, and the partition columns parse back from the path
    for path in out.glob("results/**/*.jsonl"):
        key = parse_results_key(path.relative_to(out).as_posix())
        assert (key.station, key.recipe, key.run_id, key.shard) == ("s1", "rb", "r1", 0)


def test_glob_input_and_no_profile_skips_spec_checks(tmp_path, station_data, recorded_images, capsys):
    folder = tmp_path / "in"
    copy_images(recorded_images[:4], folder / "a")
    copy_images(recorded_images[4:7], folder / "b")
    out = tmp_path / "out"
    code = main(["--data-dir", str(station_data), "batch", str(folder / "b" / "*.png"), "--model", "active",
                 "--out", str(out), "--recipe", "no-such-recipe", "--run-id", "g1", "--no-report"])
    assert code == 0
    rows = result_rows(out)
    assert len(rows) == 3 and all("/b/" in r["image"] for r in rows)
    assert all(r["spec_checked"] is False and r["spec_checks"] == [] for r in rows)
    assert all(r["decision"] in ("pass", "reject", "review") for r in rows)
    assert "spec checks skipped for recipe 'no-such-recipe'" in capsys.readouterr().err


def test_record_query_with_compare_matches_the_line(tmp_path, station_data):
    out = tmp_path / "out"
    code = main(["--data-dir", str(station_data), "batch", "record", "--lot", "LOT-B", "--model", "active",
                 "--out", str(out), "--compare", "--run-id", "q1"])
    assert code == 0
    rows = result_rows(out)
    store = StationStore(station_data, recover=False)
    try:
        line = {d["id"]: d["decision"] for d in store.recent(100)}
    finally:
        store.close()
    assert len(rows) == RECORDED == len(line)
    assert {r["inspection_id"]: r["line_decision"] for r in rows} == line
    # the same model on the same images: the batch reproduces every line decision
    assert all(r["decision"] == r["line_decision"] and r["decision_changed"] is False for r in rows)
    summary = run_summary(out, "q1")
    expected = Counter((r["line_decision"], r["decision"]) for r in rows)
    got = Counter({(a, b): n for a, row in summary["compare"]["matrix"].items() for b, n in row.items()})
    assert got == expected and summary["compare"]["changed"] == 0
    assert (out / "reports/run=q1/report.html").is_file()

    # a filter on the line decision: only those inspections
    out2 = tmp_path / "out2"
    assert main(["--data-dir", str(station_data), "batch", "--decision", "reject", "--model", "active",
                 "--out", str(out2), "--run-id", "q2", "--no-report"]) == 0
    assert {r["line_decision"] for r in result_rows(out2)} <= {"reject"}
    assert len(result_rows(out2)) == sum(1 for d in line.values() if d == "reject")


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, station_data, capsys):
    out = tmp_path / "out"
    assert main(["--data-dir", str(station_data), "batch", str(tmp_path / "missing"), "--model", "active",
                 "--out", str(out)]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["--data-dir", str(station_data), "batch", str(tmp_path), "--model", "no-such-model",
                 "--out", str(out)]) == 1
    assert "no model 'no-such-model'" in capsys.readouterr().err
    assert main(["--data-dir", str(station_data), "batch", str(tmp_path), "--since", "2d", "--model", "active"]) == 2
    assert "add the INPUT 'record'" in capsys.readouterr().err
    assert not list(out.glob("results/**/*.jsonl"))


def test_resume_refuses_another_shard_count(tmp_path, station_data, recorded_images, capsys):
    folder = tmp_path / "in"
    copy_images(recorded_images[:3], folder)
    out = tmp_path / "out"
    base = ["--data-dir", str(station_data), "batch", str(folder), "--model", "active", "--out", str(out),
            "--recipe", "rb", "--run-id", "sc", "--no-report"]
    assert main(base) == 0
    assert main(base + ["--resume", "--shards", "2", "--shard", "1"]) == 1
    assert "started with --shards 1, not 2" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 0  # nothing left to do, nothing added
    assert len(result_rows(out)) == 3


def test_record_query_time_window(tmp_path, station_data, capsys):
    out = tmp_path / "out"
    assert main(["--data-dir", str(station_data), "batch", "record", "--since", "1d", "--model", "active",
                 "--out", str(out), "--run-id", "w1", "--no-report"]) == 0
    assert len(result_rows(out)) == RECORDED
    assert main(["--data-dir", str(station_data), "batch", "record", "--until", "2000-01-01", "--model", "active",
                 "--out", str(out), "--run-id", "w2", "--no-report"]) == 1
    assert "no images in record(until=2000-01-01" in capsys.readouterr().err
    assert main(["--data-dir", str(station_data), "batch", "record", "--since", "yesterday", "--model",
                 "active", "--out", str(out)]) == 2


def test_a_model_that_fails_its_hash_stops_the_run_with_the_reason(tmp_path, station_data, recorded_images, capsys):
    folder = tmp_path / "in"
    copy_images(recorded_images[:2], folder)
    active = (station_data / "models" / "ACTIVE").read_text().strip()
    broken = tmp_path / "models" / active
    shutil.copytree(station_data / "models" / active, broken)
    with open(broken / "model.npz", "ab") as f:
        f.write(b"\0")  # a damaged copy (as a truncated download would be)
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        code = main(["--data-dir", str(station_data), "batch", str(folder), "--model", str(broken), "--out", str(out),
                     "--recipe", "rb", "--workers", workers, "--run-id", "bad", "--no-report"])
        err = capsys.readouterr().err
        assert code == 1 and "content hash mismatch" in err and "--resume --run-id bad" in err, err
        assert result_rows(out) == []
        assert run_summary(out, "bad")["complete"] is False

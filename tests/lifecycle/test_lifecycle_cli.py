"""dataset import -> train -> evaluate -> deploy (gate) -> models list -> rollback, as a user runs them."""
from __future__ import annotations

import json
import sqlite3

from sim_dataset import run_cli

EVAL_KEYS = {"image_auroc", "pixel_auroc", "precision", "recall", "f1", "latency_ms_p50", "latency_ms_p99",
             "confusion_matrix", "threshold", "false_reject_rate"}


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _train(data_dir, *extra):
    proc = _ok(run_cli(data_dir, "train", "--dataset", "parts@1", "--model-type", "variation", "--json", *extra))
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _audit(data_dir):
    con = sqlite3.connect(data_dir / "station.db")
    try:
        return [(a, json.loads(p) if p else None) for a, p in con.execute(
            "SELECT action, payload FROM audit_log WHERE subject = 'model-registry' ORDER BY seq")]
    finally:
        con.close()


def test_train_and_evaluate_a_model_that_finds_seeded_defects(anomaly_folder, tmp_path):
    data = tmp_path / "data"
    out = _ok(run_cli(data, "dataset", "import", "parts", str(anomaly_folder)))
    assert "dataset parts@1 created (46 images, 12 masks" in out.stdout
    listed = json.loads(_ok(run_cli(data, "dataset", "list", "--json")).stdout)
    assert [d["ref"] for d in listed] == ["parts@1"]

    trained, stderr = _train(data)
    model = trained["model"]
    assert model.startswith("variation-") and trained["dataset"] == "parts@1"
    assert "reading images" in stderr and "[" in stderr and "]" in stderr  # the progress bar
    meta = json.loads((data / "models" / model / "model.json").read_text())
    assert meta["dataset"]["ref"] == "parts@1" and len(meta["dataset"]["manifest_sha256"]) == 64
    assert meta["model_hash"] == trained["model_hash"] and meta["params"]["downscale"] == 2

    ev = json.loads(_ok(run_cli(data, "evaluate", model, "--dataset", "parts", "--json")).stdout)
    assert EVAL_KEYS <= set(ev)
    assert ev["dataset"] == "parts@1" and ev["n_good"] == 7 and ev["n_defect"] == 9
    # finds the seeded defects and does not flag the good parts
    assert ev["recall"] == 1.0 and ev["false_reject_rate"] == 0.0 and ev["image_auroc"] == 1.0
    assert ev["pixel_auroc"] > 0.95
    assert ev["confusion_matrix"]["matrix"] == [[7, 0], [0, 9]]
    assert "validation split" in ev["threshold"]["rule"] and ev["threshold"]["explanation"]
    assert (data / "models" / model / "evaluations" / "parts@1.json").exists()

    rows = json.loads(_ok(run_cli(data, "models", "list", "--json")).stdout)
    assert rows[0]["model"] == model and rows[0]["dataset"] == "parts@1"
    assert rows[0]["evaluations"]["parts@1"]["recall"] == 1.0 and rows[0]["role"] == ""


def test_gate_refuses_a_worse_model_deploys_atomically_audits_and_rolls_back(anomaly_folder, tmp_path):
    data = tmp_path / "data"
    _ok(run_cli(data, "dataset", "import", "parts", str(anomaly_folder)))
    good, _ = _train(data)
    _ok(run_cli(data, "deploy", good["model"]))
    assert (data / "models" / "ACTIVE").read_text().strip() == good["model"]

    # a deliberately worse model: a tolerance band so wide that faint defects vanish
    worse, _ = _train(data, "--param", "a_abs=0.25")
    refused = run_cli(data, "deploy", worse["model"])
    assert refused.returncode == 1
    assert "deploy refused" in refused.stderr
    assert "recall 0.6667 below the minimum 0.9" in refused.stderr
    assert f"regresses against active model {good['model']}" in refused.stderr
    assert (data / "models" / "ACTIVE").read_text().strip() == good["model"]  # unchanged

    # a second good model (other parameters) passes and becomes active; then shadow; then rollback
    second, _ = _train(data, "--param", "margin=1.5")
    out = json.loads(_ok(run_cli(data, "deploy", second["model"], "--json")).stdout)
    assert out["deployed"] and out["previous"] == good["model"] and out["gate"]["passed"]
    assert (data / "models" / "ACTIVE").read_text().strip() == second["model"]
    _ok(run_cli(data, "deploy", good["model"], "--shadow"))
    assert (data / "models" / "SHADOW").read_text().strip() == good["model"]
    roles = {r["model"]: r["role"] for r in json.loads(_ok(run_cli(data, "models", "list", "--json")).stdout)}
    assert roles == {good["model"]: "shadow", worse["model"]: "", second["model"]: "active"}

    back = _ok(run_cli(data, "deploy", "--rollback"))
    assert f"rolled back: {good['model']} is active again (was {second['model']})" in back.stdout
    assert (data / "models" / "ACTIVE").read_text().strip() == good["model"]

    actions = [a for a, _ in _audit(data)]
    assert actions == ["model.deployed", "model.deploy_refused", "model.deployed", "model.deployed",
                       "model.rolled_back"]
    refused_payload = _audit(data)[1][1]
    assert refused_payload["model"] == worse["model"] and not refused_payload["gate"]["passed"]
    assert _ok(run_cli(data, "audit", "verify")).stdout.startswith("audit chain intact")


def test_bad_requests_get_clear_errors(anomaly_folder, tmp_path):
    data = tmp_path / "data"
    r = run_cli(data, "train", "--dataset", "nothing", "--model-type", "variation")
    assert r.returncode == 1 and "no dataset 'nothing'" in r.stderr
    r = run_cli(data, "dataset", "import", "parts", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "not a folder" in r.stderr
    _ok(run_cli(data, "dataset", "import", "parts", str(anomaly_folder)))
    r = run_cli(data, "train", "--dataset", "parts", "--model-type", "variation", "--param", "downscale=99")
    assert r.returncode == 1 and "downscale must be an int in 1..8" in r.stderr
    r = run_cli(data, "deploy", "no-such-model")
    assert r.returncode == 1 and "no model 'no-such-model'" in r.stderr
    r = run_cli(data, "deploy", "--rollback")
    assert r.returncode == 1 and "no model switch in the audit log" in r.stderr
    r = run_cli(data, "evaluate", "active", "--dataset", "parts")
    assert r.returncode == 1 and "no active model" in r.stderr

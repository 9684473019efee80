"""Two shards starting one run at once: the one that loses the manifest claim inspects
under the winner's settings, not under the defaults it had built before claiming.

The race is made deterministic: the in-process shard 1 reads "no manifest yet", then -
right before its own claim - a real ``linestation batch`` subprocess runs shard 0 to the
end (claiming the run with ``--station s1 --recipe rb``); shard 1's claim then loses.
"""
from __future__ import annotations

import json

from conftest import copy_images_to_shards, result_rows

from station.batch.output import RunOutput
from station.cli import main


def _claim_after_rival(monkeypatch, run_batch_cli, data_dir, rival_args):
    real = RunOutput.claim_manifest
    rival = {}

    def claim(self, run_id, proposed):
        if not rival:
            rival["proc"] = run_batch_cli(data_dir, *rival_args)
        return real(self, run_id, proposed)

    monkeypatch.setattr(RunOutput, "claim_manifest", claim)
    return rival


def test_claim_loser_lists_again_under_the_winners_settings(tmp_path, station_data, recorded_images, monkeypatch,
                                                            run_batch_cli, capsys):
    inputs = copy_images_to_shards(recorded_images[:6], tmp_path)
    out = tmp_path / "out"
    base = [str(inputs), "--model", "active", "--out", str(out), "--run-id", "race", "--shards", "2",
            "--no-report"]
    rival = _claim_after_rival(monkeypatch, run_batch_cli, station_data,
                               [*base, "--shard", "0", "--recipe", "rb", "--station", "s1"])
    assert main(["--data-dir", str(station_data), "batch", *base, "--shard", "1"]) == 0
    assert rival["proc"].returncode == 0, rival["proc"].stderr
    manifest = json.loads((out / "summary/run=race/run.json").read_text())
    assert (manifest["settings"]["station"], manifest["settings"]["recipe"]) == ("s1", "rb")
    rows = result_rows(out)
    assert {r["shard"] for r in rows} == {0, 1} and len(rows) == 6
    assert {(r["station"], r["recipe"], r["spec_checked"]) for r in rows} == {("s1", "rb", True)}
    assert not list(out.glob("results/*/station=batch")), "no row may land under the default station"


def test_claim_loser_with_conflicting_flags_is_refused(tmp_path, station_data, recorded_images, monkeypatch,
                                                       run_batch_cli, capsys):
    inputs = copy_images_to_shards(recorded_images[:4], tmp_path)
    out = tmp_path / "out"
    base = [str(inputs), "--model", "active", "--out", str(out), "--run-id", "race2", "--shards", "2",
            "--no-report"]
    _claim_after_rival(monkeypatch, run_batch_cli, station_data,
                       [*base, "--shard", "0", "--recipe", "rb", "--station", "s1"])
    capsys.readouterr()
    assert main(["--data-dir", str(station_data), "batch", *base, "--shard", "1", "--station", "s9"]) == 1
    assert "--station 's9', but the run has 's1'" in capsys.readouterr().err
    assert {r["shard"] for r in result_rows(out)} <= {0}

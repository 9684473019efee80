"""The config schema: strict, located errors, secrets refused, the demo file valid."""
from __future__ import annotations

from pathlib import Path

import pytest

from station.config import ConfigError, LineStationConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_config_is_valid_and_uses_the_simulated_camera():
    cfg = load_config(ROOT / "resources" / "demo.yaml")
    assert isinstance(cfg, LineStationConfig)
    assert cfg.camera.type == "sim"
    assert cfg.detector.type == "patchcore"  # the default anomaly model
    assert len(cfg.config_hash()) == 16


def test_config_hash_changes_with_content():
    a = parse_config("schema_version: 1\ncamera: {type: sim}\n")
    b = parse_config("schema_version: 1\ncamera: {type: sim, seed: 3}\n")
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == parse_config("schema_version: 1\ncamera:\n  type: sim\n").config_hash()
    # screen-only settings do not change what a record says about how it was decided
    c = parse_config("schema_version: 1\ncamera: {type: sim}\nui: {idle_signout_min: 3}\n")
    assert c.config_hash() == a.config_hash()


def _issues(text: str) -> list:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "station.yaml")
    return info.value.issues


def test_every_error_names_file_line_key_value_and_expectation():
    issues = _issues(
        "schema_version: 1\n"
        "camera:\n"
        "  type: sim\n"
        "  pixel_format: Mono9\n"
        "  fault_rates: {dim: 2}\n"
        "  colour: red\n"
        "recipe:\n"
        "  roi: [0, 0, -5, 10]\n"
    )
    by_path = {i.path: i for i in issues}
    assert set(by_path) == {"camera.pixel_format", "camera.fault_rates", "camera.colour", "recipe.roi"}
    fmt = by_path["camera.pixel_format"]
    assert fmt.file == "station.yaml" and fmt.line == 4 and fmt.value == "Mono9"
    assert "Mono8" in fmt.message
    assert "unknown key" in by_path["camera.colour"].message
    assert "within 0..1" in by_path["camera.fault_rates"].message
    text = str(fmt)
    assert text.startswith("station.yaml:4: camera.pixel_format = \"Mono9\": expected")


def test_unknown_camera_type_lists_the_known_ones():
    (issue,) = _issues("schema_version: 1\ncamera: {type: webcam}\n")
    assert issue.path == "camera" and "'sim'" in issue.message and "'pylon'" in issue.message


def test_missing_required_sections_and_wrong_schema_version():
    (issue,) = _issues("schema_version: 1\n")
    assert issue.path == "camera" and "missing" in issue.message
    (issue,) = _issues("schema_version: 7\ncamera: {type: sim}\n")
    assert issue.path == "schema_version" and issue.value == 7


def test_secrets_in_the_file_are_refused_without_echoing_them():
    issues = _issues("schema_version: 1\ncamera: {type: sim}\nstation: {api_key: hunter2}\n")
    secret = [i for i in issues if i.path == "station.api_key"][0]
    assert "environment" in secret.message
    assert "hunter2" not in str(secret)


@pytest.mark.parametrize("text", ["camera: [\n", "- just\n- a list\n", "", "\x00\x01binary"])
def test_malformed_files_give_one_clear_error(text):
    issues = _issues(text)
    assert issues and all(i.file == "station.yaml" for i in issues)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)


def test_relative_replay_folder_resolves_against_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    f = tmp_path / "cfg" / "replay.yaml"
    f.write_text("schema_version: 1\ncamera: {type: replay, folder: ../images}\n")
    assert load_config(f).camera.folder == (tmp_path / "images").resolve()

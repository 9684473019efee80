"""The lifecycle and sagemaker config sections: defaults keep old files valid; bad values are located."""
from __future__ import annotations

import pytest

from station.config import ConfigError, parse_config

BASE = "schema_version: 1\ncamera: {type: sim}\n"


def test_defaults_keep_existing_configs_valid():
    cfg = parse_config(BASE)
    assert cfg.lifecycle.gate.min_recall == 0.9 and cfg.lifecycle.run_shadow and cfg.lifecycle.shadow_every == 1
    assert cfg.detector.type == "variation"


def test_bad_values_name_file_line_and_key():
    text = BASE + """lifecycle:
  gate:
    min_recall: 1.5
    max_fals_reject_rate: 0.1
detector:
  type: sagemaker
  endpoint_name: "bad name!"
  secret_key: abc
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "station.yaml")
    issues = {i.path: i for i in err.value.issues}
    assert issues["lifecycle.gate.min_recall"].line == 5
    assert "less than or equal to 1" in issues["lifecycle.gate.min_recall"].message
    assert "unknown key" in issues["lifecycle.gate.max_fals_reject_rate"].message
    assert "detector.endpoint_name" in issues  # the union tag is not part of the path
    assert "environment variable" in issues["detector.secret_key"].message

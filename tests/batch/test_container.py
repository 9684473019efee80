"""The batch container (installer/batch.Dockerfile) without Docker: what it pins and runs, and
that `linestation batch` really works without the packages the image leaves out."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import copy_images

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "installer" / "batch.Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def skipped_packages() -> set[str]:
    arg = next(rest for word, rest in instructions() if word == "ARG" and rest.startswith("SKIP_PACKAGES="))
    return set(json.loads(arg.split("=", 1)[1]).split())


def test_base_image_is_a_pinned_python_the_project_supports():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 1
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-\w+)?", froms[0])
    assert m, f"base image must be python:X.Y.Z-slim[-distro], got {froms[0]}"
    version = (int(m[1]), int(m[2]))
    spec = re.fullmatch(r">=(\d+)\.(\d+),<(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert spec, "requires-python changed shape: update this test"
    assert (int(spec[1]), int(spec[2])) <= version < (int(spec[3]), int(spec[4]))


def test_entrypoint_is_the_linestation_command_run_as_a_user():
    ins = instructions()
    entry = [json.loads(rest) for word, rest in ins if word == "ENTRYPOINT"]
    assert entry == [["linestation"]]
    assert "linestation" in PYPROJECT["project"]["scripts"]
    users = [i for i, (word, _) in enumerate(ins) if word == "USER"]
    assert users and ins[users[-1]][1] not in ("root", "0")
    last_run = max(i for i, (word, _) in enumerate(ins) if word == "RUN")
    assert users[-1] > last_run  # nothing runs as root after the switch, the entrypoint does not


def test_requirements_are_the_exact_runtime_pins_without_qt_or_camera_sdks(tmp_path):
    deps = PYPROJECT["project"]["dependencies"]
    names = {d.split("==")[0].strip().lower() for d in deps}
    skip = skipped_packages()
    assert skip <= names, f"the Dockerfile skips packages pyproject no longer has: {skip - names}"
    assert {"pyside6", "pyqtgraph"} <= skip and "opencv-python-headless" not in skip
    # run the Dockerfile's own generator against the repository's pyproject.toml
    run = next(rest for word, rest in instructions() if word == "RUN" and "tomllib" in rest)
    code = re.search(r'python -c "(.*?)" > /tmp/requirements.txt', run).group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "SKIP_PACKAGES": " ".join(sorted(skip))}, check=True).stdout
    reqs = [r for r in out.splitlines() if r.strip()]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[0-9][^\s]*(\s+#.*)?", r.split(";")[0].strip()) for r in reqs)
    assert {r.split("==")[0].strip().lower() for r in reqs} == names - skip
    assert any(r.startswith("opencv-python-headless==") for r in reqs)


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not in the batch container")
sys.meta_path.insert(0, Block())
import pkgutil, station.batch
for mod in pkgutil.iter_modules(station.batch.__path__):
    __import__(f"station.batch.{{mod.name}}")
from station.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("LOADED", loaded)
sys.exit(code)
"""


def test_batch_runs_without_qt_and_camera_sdks(tmp_path, station_data, recorded_images):
    """A real batch (folder in, results + report out) and batch-report in a Python where the
    packages the image leaves out cannot be imported at all."""
    blocked = sorted(skipped_packages() | {"shiboken6"})
    script = tmp_path / "blocked_batch.py"
    script.write_text(BLOCKER.format(blocked={b if b != "pyside6" else "PySide6" for b in blocked}))
    folder = tmp_path / "in"
    copy_images(recorded_images[:3], folder)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["batch", str(folder), "--model", "active", "--out", str(out), "--no-spec", "--run-id", "c1"],
                 ["batch-report", str(out), "--run-id", "c1"]):
        proc = subprocess.run([sys.executable, str(script), "--data-dir", str(station_data), *argv],
                              capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "LOADED []" in proc.stdout
    assert (out / "reports" / "run=c1" / "report.html").is_file()
    summary = json.loads((out / "summary" / "run=c1" / "summary.json").read_text())
    assert summary["images"] == 3


@pytest.mark.parametrize("blocked_name", ["PySide6"])
def test_the_blocker_really_blocks(tmp_path, blocked_name):
    """The finder used above fails an import of a blocked package (else the test proves nothing)."""
    script = tmp_path / "probe.py"
    script.write_text("import importlib.abc, sys\n"
                      f"class B(importlib.abc.MetaPathFinder):\n"
                      f"    def find_spec(self, name, path=None, target=None):\n"
                      f"        if name.split('.')[0] == {blocked_name!r}: raise ImportError('blocked')\n"
                      "sys.meta_path.insert(0, B())\n"
                      f"import {blocked_name}\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ImportError: blocked" in proc.stderr

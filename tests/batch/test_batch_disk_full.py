"""The result writer hits a full disk: a clear error, the rows already written kept, and
--resume finishes the run. The kernel refuses the write for real: the subprocess runs with
RLIMIT_FSIZE (writes past it fail with EFBIG, SIGXFSZ ignored) as a full volume would."""
from __future__ import annotations

import os
import resource
import signal
import subprocess

from conftest import ROOT, batch_argv, copy_images, result_rows

LIMIT = 4096  # bytes per file: the run manifest fits, the results file fills up after a few rows


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_disk_full_is_a_clear_error_and_resume_completes(tmp_path, station_data, recorded_images, run_batch_cli):
    images = copy_images(recorded_images, tmp_path / "in")
    out = tmp_path / "out"
    args = [tmp_path / "in", "--model", "active", "--out", out, "--run-id", "full", "--no-report", "--no-spec",
            "--recipe", "rb", "--station", "s1"]
    proc = subprocess.run(batch_argv(station_data, *args), capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=dict(os.environ), preexec_fn=_limited)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write the results" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    files = list(out.glob("results/**/*.jsonl"))
    kept = [line for f in files for line in f.read_bytes().split(b"\n")[:-1]]  # complete lines only
    assert 0 < len(kept) < len(images)
    assert sum(f.stat().st_size for f in files) <= LIMIT * len(files)  # the last write was cut short

    done = run_batch_cli(station_data, *args, "--resume")
    assert done.returncode == 0, done.stderr
    assert "repaired" in done.stderr  # the torn last line of the full disk is cut
    rows = result_rows(out)
    assert sorted(r["image"] for r in rows) == sorted(str(p) for p in images)  # each exactly once

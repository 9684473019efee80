"""Several processes filling the same verified cache folder at once (shards of one run on
one machine fetching the same profile or model): none may delete a copy another one has
verified, and none may fail because another renamed its copy in first. Real processes,
lined up round by round with a file barrier so that they publish at the same moment."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

PROCESSES, ROUNDS = 4, 25
SCRIPT = r"""
import sys, time
from pathlib import Path
from station.durable import publish_dir

root, me, n, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
FILES = {"reference.png": b"R" * 300_000, "profile.json": b"P" * 100_000}  # the same bytes in every process

def valid(path):
    try:
        return all((path / name).read_bytes() == data for name, data in FILES.items())
    except OSError:
        return False

vanished = 0
for r in range(rounds):
    (root / f"ready-{r}-{me}").touch()
    deadline = time.monotonic() + 30
    while len(list(root.glob(f"ready-{r}-*"))) < n:
        if time.monotonic() > deadline:
            sys.exit(f"round {r}: barrier timed out")
    final = root / f"cache-{r}" / "v1"
    if not valid(final):  # the caller's own check, as profiles / model_uri do
        publish_dir(final, FILES.items(), valid)
    for _ in range(5):  # "use" the verified copy: it must stay there
        if not valid(final):
            print(f"round {r}: the verified copy was removed under this process", flush=True)
            vanished += 1
            break
sys.exit(1 if vanished else 0)
"""


def test_concurrent_publishers_keep_each_others_verified_copy(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), str(i), str(PROCESSES), str(ROUNDS)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(PROCESSES)]
    outs = [p.communicate(timeout=120) for p in procs]
    failures = [(p.returncode, out[-300:], err[-600:]) for p, (out, err) in zip(procs, outs) if p.returncode]
    assert not failures, failures
    for r in range(ROUNDS):  # one published copy per round, no temp or trash folders left
        assert sorted(q.name for q in (tmp_path / f"cache-{r}").iterdir()) == ["v1"]


def test_a_broken_copy_is_still_replaced(tmp_path):
    from station.durable import publish_dir

    files = {"profile.json": b"good"}
    final = tmp_path / "cache" / "v1"
    final.mkdir(parents=True)
    (final / "profile.json").write_bytes(b"truncat")  # a copy left by a crash, or tampered with
    valid = lambda p: (p / "profile.json").is_file() and (p / "profile.json").read_bytes() == b"good"  # noqa: E731
    assert publish_dir(final, files.items(), valid) == final
    assert (final / "profile.json").read_bytes() == b"good"
    assert [q.name for q in final.parent.iterdir()] == ["v1"]

"""Recovery at open: partial writes and unreferenced images go; what is referenced stays."""
from __future__ import annotations

import numpy as np

from station.store.station_store import StationStore
from store_helpers import make_record, random_image


def test_recover_removes_tmp_and_stray_files_only(tmp_path, rng):
    with StationStore(tmp_path) as s:
        kept = s.record_inspection(make_record(1), random_image(rng, (64, 64)))
        # A crash between the image fsync and the commit leaves a finished, unreferenced file:
        stray = s.images.put(random_image(rng, (64, 64)))
        # A crash during the write leaves a partial file in .tmp:
        (s.images.tmp_dir / "partial.123.abcd.tmp").write_bytes(b"\x89PNG half")
        foreign = s.images.root / "ab" / "notes.txt"
        foreign.parent.mkdir(exist_ok=True)
        foreign.write_text("not ours")
    with StationStore(tmp_path) as s:
        rep = s.recovery_report
        assert rep.removed_tmp == ["partial.123.abcd.tmp"]
        assert rep.removed_stray == [stray.relpath]
        assert rep.missing_images == [] and rep.ok and rep.audit.ok
        assert s.image_path(kept).exists() and not (tmp_path / stray.relpath).exists()
        assert foreign.exists()  # not a file the store wrote: left alone
        assert s.audit_entries()[-1]["action"] == "store.recovered"
        again = s.recover()
        assert again.removed_stray == [] and again.removed_tmp == []


def test_missing_referenced_image_is_reported(tmp_path, rng):
    with StationStore(tmp_path) as s:
        rid = s.record_inspection(make_record(1), random_image(rng, (8, 8)))
        path = s.image_path(rid)
    path.unlink()
    with StationStore(tmp_path) as s:
        assert not s.recovery_report.ok
        assert s.recovery_report.missing_images == [path.relative_to(tmp_path).as_posix()]


def test_open_without_recovery_leaves_files(tmp_path, rng):
    with StationStore(tmp_path) as s:
        s.images.put(np.zeros((4, 4), np.uint8))
    with StationStore(tmp_path, recover=False) as s:
        assert s.recovery_report is None and len(list(s.images.iter_files())) == 1

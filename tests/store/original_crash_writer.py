"""Child process of the orphaned-original test: records X-ray frames with their original
files through the station's own recorder, then dies between keeping one more original and
committing its record.

    python original_crash_writer.py DATA_DIR SEED RECORD_COUNT CRASH_ORIGINAL

``CRASH_ORIGINAL`` is ``new`` (the crashing part's file is new bytes: an orphan) or the
index of a recorded part whose bytes it repeats (content addressing: the same file).
Prints ``committed <stored path>`` per record, ``kept <stored path> <created>`` once the
crashing part's original is durable, then blocks in the commit until the parent SIGKILLs it.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

from station.capture.base import Frame, PartContext
from station.inspect.cycle import CycleContext, InspectionOutcome
from station.inspect.decide import Decision
from station.runtime import StoreRecorder
from station.store.station_store import StationStore


def xray_outcome(n: int, original: bytes, folder: Path) -> InspectionOutcome:
    """One recorded X-ray part as the cycle hands it over (meta as the X-ray driver sets it)."""
    import hashlib

    path = folder / f"part{n:03d}.tif"
    path.write_bytes(original)
    image = np.frombuffer(original[: 16 * 16 * 2].ljust(512, b"\0"), np.uint16).reshape(16, 16).copy()
    meta = {"original": {"file": path.name, "sha256": hashlib.sha256(original).hexdigest(),
                         "bytes": len(original), "format": "tiff", "ext": "tif", "path": str(path),
                         "resumed": False}}
    frame = Frame(image=image, pixel_format="Mono16", camera_serial="XRAY-1", exposure_us=None,
                  gain_db=None, trigger_id=n, source=path.name, meta=meta, original=original)
    return InspectionOutcome(context=PartContext(part_id=f"X{n:06d}", lot="LOT-X"),
                             cycle=CycleContext(station="station1", recipe="casting", config_hash="cfg"),
                             started_at=time.time(), frame=frame, decision=Decision.PASS, reason="test")


def main() -> None:
    data_dir, seed, count, crash = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng(seed)
    inbox = data_dir.parent / f"processing-{seed}"
    inbox.mkdir(parents=True, exist_ok=True)
    store = StationStore(data_dir, recover=False)  # the parent's recover() is what is tested
    recorder = StoreRecorder(store)
    originals = [rng.bytes(int(rng.integers(2000, 6000))) for _ in range(count)]
    for n, data in enumerate(originals):
        rid = recorder.record(xray_outcome(seed * 100 + n, data, inbox))
        print(f"committed {store.get(rid)['meta']['original']['stored']}", flush=True)

    def die_in_the_commit(record, image, heatmap=None):  # the original is durable, the row is not
        stored = record.meta["original"]["stored"]
        print(f"kept {stored} {int((data_dir / stored).exists())}", flush=True)
        threading.Event().wait()  # SIGKILL arrives here

    store.record_inspection = die_in_the_commit
    data = rng.bytes(3000) if crash == "new" else originals[int(crash)]
    recorder.record(xray_outcome(seed * 100 + count, data, inbox))


if __name__ == "__main__":
    main()

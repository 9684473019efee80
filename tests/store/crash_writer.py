"""Child process of the crash test: streams inspections into a store until it is killed.

    python crash_writer.py DATA_DIR SEED

Prints ``ready`` once the store is open, then ``begin <id>`` before and ``committed <id>``
after each record (flushed), so the parent knows what was acknowledged before the kill.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from station.store.station_store import StationStore
from store_helpers import fault_record, make_record


def main() -> None:
    data_dir, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(seed)
    # No recovery at open: strays from earlier kills pile up for the parent's final check.
    store = StationStore(data_dir, recover=False)
    n = store.part_counter("P") + 1  # carry on numbering after the restart
    print("ready", flush=True)
    decisions = ("pass", "pass", "reject", "review", "pass", "check_capture")
    while True:
        if n % 7 == 0:
            rec, image = fault_record(n), None
        else:
            rec = make_record(n, decisions[n % len(decisions)])
            h, w = 1024 + int(rng.integers(0, 17)), 1280 - int(rng.integers(0, 17))
            if n % 5 == 0:
                image = rng.integers(0, 4096, (h, w), dtype=np.uint16)
            else:
                image = rng.integers(0, 256, (h, w), dtype=np.uint8)
        print(f"begin {rec.id}", flush=True)
        store.record_inspection(rec, image)
        print(f"committed {rec.id}", flush=True)
        n += 1


if __name__ == "__main__":
    main()

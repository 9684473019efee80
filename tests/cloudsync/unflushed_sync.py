"""Child process of the batched mark-done test: a sync service whose outcome flush never
comes (flush interval: an hour), so every delivery it makes is sent but not yet marked
done when the test SIGKILLs it. Prints ``sent N`` lines as deliveries are confirmed.

    python unflushed_sync.py CONFIG DATA_DIR
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path


from cloudsync.service import open_service
from station.config import parse_config


def main() -> int:
    cfg = parse_config(Path(sys.argv[1]).read_text(), sys.argv[1])
    svc = open_service(cfg, Path(sys.argv[2]))
    svc.engine.settings = dataclasses.replace(svc.engine.settings, flush_interval_s=3600.0)
    svc.start()
    while True:  # until SIGKILL
        sent = sum(r.delivered for r in svc.engine.runners.values())
        print(f"sent {sent} buffered {svc.engine.queue.buffered()}", flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())

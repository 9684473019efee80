"""Batch inspection throughput: images/s for 1 worker (1 and 2 threads) and 2 workers, against
the station's own path.

Bootstraps a station in a temporary data dir (simulated 1280x1024 Mono8 camera, the
default PatchCore model trained as the demo does), measures the single-image station path
(the runtime's InspectionCycle: capture, spec check, detect, decide, durable record) per
part, renders ``--images`` parts with the same simulated camera into two folders of PNGs:

- ``station``: encoded as the station records its images (station/store/images.py
  ``PngOptions()``: zlib level 0, no row filter, 1.3 MB; ~1.5 ms to decode) - what a shift
  audit or a re-inspection after an incident reads;
- ``compressed``: OpenCV's default PNG (zlib level 1, adaptive row filters, ~0.6 MB;
  ~12-14 ms to decode, mostly Paeth unfiltering) - what other tools hand over.

It runs ``linestation batch`` over the station set as ``w1`` (1 worker, 1 thread, in this
process), ``w1p`` (1 spawned worker, 1 thread), ``w1t2`` (1 worker, 2 threads) and ``w2``
(2 workers, 1 thread each), and over the compressed set as ``w1`` and ``w2``,
``--repeats`` times each; the order is reversed every other repeat, so neither
start-of-repeat nor end-of-repeat noise always hits the same setup. Figures are medians
over the repeats.

- ``batch_{w1,w1t2,w2}_images_per_s``: rows finished after every worker was ready / time
  from "all workers ready" to the last row (model loading and process start excluded, and so
  are the rows a first-ready worker finished while the other still loaded);
  ``*_wall_images_per_s``: every row / the whole run, start-up included.
- ``speedup_2_vs_1``: w2 / w1 on the station set (target >= 1.6 on 2 cores);
  ``speedup_2_vs_1_process``: w2 / w1p (one spawned worker: the same as w1 but for the
  process start); ``speedup_2_vs_best_single``: w2 / the better of w1 and w1t2 (what a
  second process buys over giving one process both cores' threads);
  ``compressed_speedup_2_vs_1``: the same on the compressed set, where each worker's decode
  thread already keeps the second core busy (decode_ms: median decode of one image).
- ``station_images_per_s``: 1000 / median per-part cycle time of the station path (capture,
  spec check, detect, decide, durable record; heatmaps of rejects), measured in each repeat;
  ``*_without_capture`` leaves out the simulated camera's rendering. ``batch_w{1,2}_vs_station``:
  batch rate / station rate (medians over the repeats).

    python bench/batch.py [--images 240] [--repeats 3] [--station-parts 40] [--no-compressed] [--json]

With --json the last line is one JSON object with those keys. The machine is shared:
quote medians and ratios, not single runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.batch.run import BatchOptions, run_batch  # noqa: E402
from station.capture.image_files import decode_image  # noqa: E402
from station.config import parse_config  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402
from station.store.images import PngOptions  # noqa: E402

TARGET_SPEEDUP = 1.6


def station_config():
    return parse_config(yaml.safe_dump({
        "schema_version": 1,
        "station": {"station": "bench", "lot": "LOT-BENCH"},
        "camera": {"type": "sim", "width": 1280, "height": 1024, "pixel_format": "Mono8", "seed": 3,
                   "defect_rate": 0.2},
        "detector": {"type": "patchcore"},
        "recipe": {"name": "bench"},
    }), "bench.yaml")


# how each image set is encoded: the station's own record format, and OpenCV's default PNG
ENCODINGS = {"station": PngOptions().params(), "compressed": [cv2.IMWRITE_PNG_COMPRESSION, 1]}


def render_images(rt: StationRuntime, folders: dict[str, Path], n: int) -> None:
    for folder in folders.values():
        folder.mkdir(parents=True)
    for i in range(n):
        image, _ = rt.camera.render(10_000 + i)
        for name, folder in folders.items():
            cv2.imwrite(str(folder / f"part-{i:05d}.png"), image, ENCODINGS[name])


def decode_ms(folder: Path, n: int = 20) -> float:
    """Median wall time to read and decode one image of ``folder`` (the batch's decoder)."""
    times = []
    for path in sorted(folder.iterdir())[:n]:
        t = time.perf_counter()
        decode_image(path.read_bytes(), path.name)
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


# name: (workers, threads per worker, worker processes). ``w1`` inspects in this process, with
# the same thread limits as a worker process (onnxruntime, OpenCV and numpy's BLAS); ``w1p`` is
# one spawned worker, so w1p - w1 is only the process; ``w1t2`` gives one worker both cores.
SETUPS = {"w1": (1, 1, False), "w1p": (1, 1, True), "w1t2": (1, 2, False), "w2": (2, 1, True)}
COMPRESSED_SETUPS = ("w1", "w2")


def batch_once(data_dir: Path, folder: Path, out: Path, workers: int, threads: int, processes: bool,
               run_id: str) -> dict:
    with open(os.devnull, "w") as quiet:
        result = run_batch(BatchOptions(inputs=[str(folder)], model="active", data_dir=data_dir, out=str(out),
                                        workers=workers, threads=threads, processes=processes,
                                        run_id=run_id, recipe="bench",
                                        station="bench", report=False, stderr=quiet))
    s = result.summary
    assert s["complete"] and s["images"] > 0, s
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--station-parts", type=int, default=40)
    ap.add_argument("--no-compressed", action="store_true", help="skip the compressed-PNG image set")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ls-bench-batch-", dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        rt = StationRuntime.open(station_config(), tmp / "data", progress=lambda m: print(m, file=sys.stderr))
        print(f"bootstrap (calibrate + train PatchCore): {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs = [("station", n) for n in SETUPS] + ([] if args.no_compressed else
                                                    [("compressed", n) for n in COMPRESSED_SETUPS])
        rates: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        wall: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        folders = {name: tmp / f"images-{name}" for name in ({s for s, _ in runs})}
        station_rates: list[float] = []
        station_core_rates: list[float] = []
        cycle_ms: list[float] = []
        try:
            render_images(rt, folders, args.images)
            decode = {name: round(decode_ms(folder), 2) for name, folder in folders.items()}
            print(f"decode one image (median): {decode} ms; sizes: "
                  f"{ {n: (f / 'part-00000.png').stat().st_size for n, f in folders.items()} } bytes", file=sys.stderr)
            list(rt.run(count=5))  # warm-up
            for rep in range(args.repeats):
                # the station path in the same repeat as the batch runs: machine noise hits all three
                outs = list(rt.run(count=args.station_parts))
                totals = [o.timings_ms["total"] for o in outs]
                core = [o.timings_ms["total"] - o.timings_ms["capture"] for o in outs]
                cycle_ms += totals
                station_rates.append(1000.0 / statistics.median(totals))
                station_core_rates.append(1000.0 / statistics.median(core))
                print(f"repeat {rep + 1}: station path {statistics.median(totals):.1f} ms/part "
                      f"({statistics.median(core):.1f} without the simulated capture)", file=sys.stderr)
                order = runs if rep % 2 == 0 else list(reversed(runs))
                for images, name in order:
                    workers, threads, processes = SETUPS[name]
                    s = batch_once(tmp / "data", folders[images], tmp / "out", workers, threads, processes,
                                   f"bench-{images}-{name}-{rep}")
                    rates[(images, name)].append(s["images_per_s_after_start"])
                    wall[(images, name)].append(s["images_per_s"])
                    print(f"repeat {rep + 1}: {images} {name}: {s['images_per_s_after_start']:.1f} img/s "
                          f"({s['images_per_s']:.1f} with start-up), decisions {s['decisions']}", file=sys.stderr)
        finally:
            rt.close()

    station_rate = statistics.median(station_rates)
    core_rate = statistics.median(station_core_rates)
    med = {n: statistics.median(rates[("station", n)]) for n in SETUPS}
    best_single = max(("w1", "w1t2"), key=lambda n: med[n])
    figures = {
        "images": args.images, "repeats": args.repeats, "width": 1280, "height": 1024, "model": "patchcore",
        "station_cycle_p50_ms": round(statistics.median(cycle_ms), 2),
        "station_cycle_p99_ms": round(sorted(cycle_ms)[min(len(cycle_ms) - 1, int(0.99 * len(cycle_ms)))], 2),
        "station_images_per_s": round(station_rate, 2),
        "station_images_per_s_without_capture": round(core_rate, 2),
        **{f"batch_{n}_images_per_s": round(med[n], 2) for n in SETUPS},
        **{f"batch_{n}_wall_images_per_s": round(statistics.median(wall[("station", n)]), 2) for n in SETUPS},
        **{f"batch_{n}_runs": [round(v, 2) for v in rates[("station", n)]] for n in SETUPS},
        "decode_ms": decode, "images_encoding": "station (PngOptions(): zlib 0, no filter)",
        "speedup_2_vs_1": round(med["w2"] / med["w1"], 3),
        "speedup_2_vs_1_process": round(med["w2"] / med["w1p"], 3),
        "best_single_worker": best_single,
        "speedup_2_vs_best_single": round(med["w2"] / med[best_single], 3),
        **{f"batch_{n}_vs_station": round(med[n] / station_rate, 3) for n in SETUPS},
        **{f"batch_{n}_vs_station_without_capture": round(med[n] / core_rate, 3) for n in SETUPS},
        "target_speedup": TARGET_SPEEDUP, "cpus": os.cpu_count(),
    }
    if not args.no_compressed:
        cmed = {n: statistics.median(rates[("compressed", n)]) for n in COMPRESSED_SETUPS}
        figures.update({f"compressed_batch_{n}_images_per_s": round(cmed[n], 2) for n in COMPRESSED_SETUPS})
        figures.update({f"compressed_batch_{n}_runs": [round(v, 2) for v in rates[("compressed", n)]]
                        for n in COMPRESSED_SETUPS})
        figures["compressed_speedup_2_vs_1"] = round(cmed["w2"] / cmed["w1"], 3)
    figures["target_met"] = figures["speedup_2_vs_1"] >= TARGET_SPEEDUP
    print(f"station path: p50 {figures['station_cycle_p50_ms']} ms/part = {figures['station_images_per_s']} img/s "
          f"({figures['station_images_per_s_without_capture']} img/s without the simulated capture)")
    for name, label in (("w1", "1 worker, 1 thread"), ("w1p", "1 worker process, 1 thread"),
                        ("w1t2", "1 worker, 2 threads"), ("w2", "2 workers")):
        print(f"batch {label}: {figures[f'batch_{name}_images_per_s']} img/s "
              f"({figures[f'batch_{name}_vs_station']}x station)")
    print(f"speed-up 2 workers vs 1 worker 1 thread: {figures['speedup_2_vs_1']}x (target {TARGET_SPEEDUP}x); "
          f"vs the best single worker ({best_single}): {figures['speedup_2_vs_best_single']}x; "
          f"vs 1 worker process with the same thread limits: {figures['speedup_2_vs_1_process']}x")
    if "compressed_speedup_2_vs_1" in figures:
        print(f"compressed PNGs (decode {decode['compressed']} ms vs {decode['station']} ms): 1 worker "
              f"{figures['compressed_batch_w1_images_per_s']} img/s, 2 workers "
              f"{figures['compressed_batch_w2_images_per_s']} img/s: {figures['compressed_speedup_2_vs_1']}x")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

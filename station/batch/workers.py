"""Inspection workers: N processes, each loading the model once, decoding overlapped with
inference.

Inside a worker a reader thread reads and decodes the next images (file or S3 reads and
``cv2.imdecode`` release the GIL) while the main thread runs the cycle on the current one.
Each worker gives onnxruntime, OpenCV and numpy's BLAS (the PatchCore nearest-neighbour
products) ``threads`` threads, 1 by default, so N workers use N cores instead of fighting
over them; that holds for the in-process worker too (``threadpool_limits``: an unlimited
BLAS pool there would spin on every core and make ``--workers 1 --threads 1`` mean
neither). Processes are started with ``spawn`` (no inherited onnxruntime / BLAS thread
pools or locks). ``workers == 1`` runs the same loop in the calling process (no start-up
cost).

Workers send rows back; only the parent writes results, so the ledger has one writer.
"""
from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from station.aws_client import AwsEndpoint
from station.batch.engine import BatchInspector, ReadError, image_info
from station.batch.inputs import ImageItem
from station.batch.models import ModelRef, ProfileRef, use_threads
from station.batch.rows import error_row
from station.capture.base import CaptureError
from station.capture.image_files import decode_image
from station.inspect.decide import DecisionPolicy

log = logging.getLogger(__name__)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PREFETCH = 2  # decoded images waiting per worker (1.3 MP Mono8: ~1.3 MB each)

Row = dict[str, Any]


IMAGES_PER_EXTRA_WORKER = 100  # a spawned worker costs ~1-2 s to start (imports, model)


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (``docker --cpus``, an ECS / Batch
    task's vCPUs), or None when unlimited or unknown. cgroup v2 ``cpu.max`` ("quota
    period" or "max period"), else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may use: its affinity mask (a cpuset), capped by its cgroup's CPU
    quota (rounded down, at least 1): a container limited to 2 vCPUs on a 16-core host
    must not start 16 workers, each loading the model."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        cpus = min(cpus, int(quota))
    return max(1, cpus)


def auto_workers(pending: int, threads: int = 1, cpus: int | None = None) -> int:
    """``--workers auto``: one worker per ``threads`` usable cores, but one more worker only
    per ``IMAGES_PER_EXTRA_WORKER`` images: a spawned worker takes 1-2 s to start, so on
    2 cores a second one pays off from about 200 images on."""
    by_cores = max(1, (cpus or usable_cpus()) // max(1, threads))
    return max(1, min(by_cores, pending // IMAGES_PER_EXTRA_WORKER))


class WorkerFailed(RuntimeError):
    """A worker could not start (model, profile) or died mid-run; the run stops, resumable."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to build its inspector (picklable)."""

    model: ModelRef
    profiles: dict[str, ProfileRef | None]
    policy: dict[str, float]
    run_id: str
    shard: int
    threads: int = 1
    s3: AwsEndpoint | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def build(self) -> BatchInspector:
        detector = use_threads(self.model.load(), self.threads)
        profiles = {recipe: ref.load() if ref is not None else None for recipe, ref in self.profiles.items()}
        return BatchInspector(detector, DecisionPolicy(**self.policy), profiles, run_id=self.run_id,
                              shard=self.shard)


def _read(item: ImageItem, s3) -> bytes:
    if item.kind == "s3":
        bucket, key = item.uri[5:].split("/", 1)
        return s3.get(bucket, key, if_match=item.etag or None)
    return Path(item.uri).read_bytes()


def load_item(item: ImageItem, s3) -> tuple[Any, dict[str, Any] | None]:
    """(decoded image or the CaptureError explaining why not, image info)."""
    try:
        data = _read(item, s3)
    except Exception as exc:  # OSError, S3AccessError: the row says so, the run goes on
        return ReadError(f"{item.uri}: {exc}"), None
    try:
        image, _ = decode_image(data, item.uri)  # the replay camera's checks (truncation too)
    except CaptureError as exc:
        return exc, {"bytes": len(data)}
    return image, image_info(image, len(data))


def inspect_stream(inspector: BatchInspector, items: Iterable[ImageItem], emit: Callable[[Row], None],
                   s3=None) -> None:
    """Inspect ``items`` in order, reading/decoding the next ones on a helper thread.

    If ``emit`` fails (a full disk, a closed pipe), the reader is stopped and joined before
    the error goes up: a process must not exit while that thread is inside native decode
    code (the C++ runtime aborts the interpreter at exit, exit -6, instead of the clear
    error the caller prints)."""
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    failure: list[BaseException] = []
    halt = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if halt.is_set():
                    return
                ready.put((item, *load_item(item, s3)))
        except BaseException as exc:  # the item source itself broke: surface it in the caller
            failure.append(exc)
        finally:
            ready.put(None)

    reader = threading.Thread(target=produce, name="batch-read", daemon=True)
    reader.start()
    try:
        while (got := ready.get()) is not None:
            item, loaded, info = got
            try:
                row = inspector.inspect(item, loaded, info)
            except Exception as exc:  # never lose the image: it gets a row saying what broke
                row = error_row(item, f"inspection_error: {type(exc).__name__}: {exc}",
                                run_id=inspector.run_id, shard=inspector.shard)
            emit(row)
    except BaseException:
        halt.set()
        while reader.is_alive():  # unblock a reader waiting on the full queue, then join it
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        raise
    reader.join()
    if failure:
        raise failure[0]


def _s3_for(spec: WorkerSpec):
    from station.batch.s3io import S3Access

    return S3Access(spec.s3) if spec.s3 is not None else S3Access()


# --- worker processes ------------------------------------------------------------------

def worker_main(spec: WorkerSpec, tasks: Any, results: Any) -> None:
    """Entry point of a worker process: rows out until the task queue says stop."""
    # the parent decides when to stop: Ctrl-C and a process-group SIGTERM (docker stop, AWS
    # Batch, systemd, kill -- -PGID) reach the workers too, which must finish their images
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import cv2

    cv2.setNumThreads(spec.threads)
    threadpool_limits(limits=spec.threads)  # THREAD_ENV set it at import; this covers any other BLAS
    pid = os.getpid()
    try:
        inspector = spec.build()
    except Exception as exc:
        results.put(("failed", pid, f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", pid, None))
    parent = os.getppid()

    def items() -> Iterator[ImageItem]:
        while True:
            try:
                item = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # the parent was killed: do not linger
                    return
                continue
            if item is None:
                return
            yield item

    inspect_stream(inspector, items(), lambda row: results.put(("row", pid, row)), _s3_for(spec))
    results.put(("done", pid, None))


class WorkerPool:
    """``n`` worker processes fed from one task queue, at most ``window`` images in flight."""

    def __init__(self, spec: WorkerSpec, n: int) -> None:
        self.spec, self.n = spec, n
        self.ctx = mp.get_context("spawn")
        self.tasks = self.ctx.Queue()
        self.results = self.ctx.Queue()
        self.procs: list = []
        self.ready_at: float | None = None

    def _start(self) -> None:
        saved = {k: os.environ.get(k) for k in (*THREAD_ENV, *self.spec.extra_env)}
        os.environ.update({k: str(self.spec.threads) for k in THREAD_ENV})  # children read these at import
        os.environ.update(self.spec.extra_env)
        try:
            for i in range(self.n):
                p = self.ctx.Process(target=worker_main, args=(self.spec, self.tasks, self.results),
                                     name=f"batch-worker-{i}", daemon=True)
                p.start()
                self.procs.append(p)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def run(self, items: Iterable[ImageItem], emit: Callable[[Row], None], stop: threading.Event) -> None:
        """Inspect ``items`` (until ``stop``); rows go to ``emit`` in completion order.

        Raises :class:`WorkerFailed` when a worker cannot start or dies; images whose rows
        never came back are simply not in the results, so ``--resume`` redoes them.
        """
        self._start()
        source = iter(items)
        window = self.n * (PREFETCH + 2)
        in_flight, exhausted, ready, done = 0, False, 0, set()
        try:
            while True:
                while not exhausted and not stop.is_set() and in_flight < window:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    self.tasks.put(item)
                    in_flight += 1
                if in_flight == 0 and (exhausted or stop.is_set()):
                    break
                try:
                    kind, pid, payload = self.results.get(timeout=0.5)
                except queue.Empty:
                    dead = [p for p in self.procs if p.exitcode is not None and p.pid not in done]
                    if dead:
                        raise WorkerFailed(f"worker {dead[0].name} (pid {dead[0].pid}) died with exit code "
                                           f"{dead[0].exitcode}; {in_flight} image(s) unfinished, --resume redoes them")
                    continue
                if kind == "row":
                    in_flight -= 1
                    emit(payload)
                elif kind == "ready":
                    ready += 1
                    if ready == self.n:
                        self.ready_at = time.perf_counter()
                elif kind == "failed":
                    raise WorkerFailed(f"a worker could not start: {payload}")
                elif kind == "done":
                    done.add(pid)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for _ in self.procs:
            self.tasks.put(None)
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():  # workers ignore SIGTERM: a hung one is killed
                p.kill()
                p.join(2)
        self.tasks.close()
        self.results.close()


def run_in_process(spec: WorkerSpec, items: Iterable[ImageItem], emit: Callable[[Row], None],
                   stop: threading.Event) -> float:
    """The one-worker path: the same loop in this process. Returns when the model was
    ready (``perf_counter``), so rates can leave the loading out as for worker processes."""
    import cv2

    try:
        inspector = spec.build()
    except Exception as exc:  # the same report as a worker process that cannot start
        raise WorkerFailed(f"cannot start: {type(exc).__name__}: {exc}") from exc
    ready_at = time.perf_counter()
    previous = cv2.getNumThreads()
    cv2.setNumThreads(spec.threads)
    try:
        with threadpool_limits(limits=spec.threads):  # restored on return (tests, the bench)
            inspect_stream(inspector, itertools.takewhile(lambda _: not stop.is_set(), items), emit, _s3_for(spec))
    finally:
        cv2.setNumThreads(previous)
    return ready_at

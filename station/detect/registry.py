"""The model store: immutable model directories plus atomic ACTIVE / SHADOW pointers.

Layout under ``root``::

    ACTIVE                     model id of the model the station runs (one line)
    SHADOW                     model id run alongside for comparison (optional)
    LAST_VERSION               highest model_version ever handed out
    variation-20261126T193000-1a2b3c/
        model.npz              the arrays (numpy, no pickles)
        model.json             type, version, created_at, params, training summary,
                               dataset info, and the sha256 of model.npz

A model directory is written under a temporary name, fsynced and renamed into place, so a
reader sees either the whole model or none of it; it is never modified afterwards.
Pointers are replaced with ``os.replace`` after an fsync. ``load`` verifies the recorded
content hash, so a corrupt or truncated model fails loudly with its path instead of
producing wrong verdicts.

Loaders are looked up by ``model_type`` (``LOADERS``); a new model family registers a
``(arrays, meta) -> Detector`` function there or passes ``loaders=`` to the registry.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from station.detect.base import Detector
from station.detect.patchcore import PatchCoreModel
from station.detect.variation import VariationModel
from station.durable import fsync_dir, write_synced

try:  # POSIX; on Windows saves are not serialised across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
ARRAYS_FILE = "model.npz"
META_FILE = "model.json"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Loader = Callable[[dict[str, np.ndarray], dict[str, Any]], Detector]
LOADERS: dict[str, Loader] = {"variation": VariationModel.from_state, "patchcore": PatchCoreModel.from_state}


class SavableModel(Protocol):
    model_id: str
    model_type: str
    model_hash: str
    model_version: str

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...


class ModelStoreError(Exception):
    """Base class of registry errors."""


class ModelNotFound(ModelStoreError):
    pass


class CorruptModel(ModelStoreError):
    """A model directory exists but cannot be read or fails its content hash."""


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    model_type: str
    model_version: str
    created_at: str
    path: Path
    meta: dict[str, Any]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




class ModelRegistry:
    """Models saved under ``root``, with the ACTIVE and SHADOW pointers."""

    def __init__(self, root: Path | str, *, loaders: dict[str, Loader] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.loaders: dict[str, Loader] = dict(LOADERS if loaders is None else loaders)

    # ------------------------------------------------------------------ models

    def save(self, model: SavableModel, *, dataset: dict[str, Any] | None = None) -> str:
        """Write ``model`` as a new immutable model directory and return its id.

        The registry assigns the next ``model_version`` (an increasing integer, as a
        string) and records it on ``model`` as well. Saving the same model (same id and
        content hash) again returns the existing id.
        """
        model_id = model.model_id
        if not _ID_RE.match(model_id or ""):
            raise ValueError(f"invalid model id {model_id!r}")
        arrays, state = model.to_state()
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        payload = buf.getvalue()
        final = self.root / model_id
        with self._lock():
            if final.exists():
                existing = self._read_meta(model_id)
                if existing.get("model_hash") != model.model_hash:
                    raise ModelStoreError(
                        f"{final} already holds a different model (hash "
                        f"{existing.get('model_hash')}, saving {model.model_hash})"
                    )
                model.model_version = str(existing["model_version"])
                return model_id
            version = self._next_version()
            meta = {
                **state,
                "schema_version": SCHEMA_VERSION,
                "model_id": model_id,
                "model_type": model.model_type,
                "model_version": str(version),
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "dataset": dict(dataset or {}),
                "files": {ARRAYS_FILE: {"sha256": _sha256(payload), "bytes": len(payload)}},
            }
            tmp = self.root / f".tmp-{model_id}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                write_synced(tmp / ARRAYS_FILE, payload)
                write_synced(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
                fsync_dir(tmp)
                os.rename(tmp, final)
            except BaseException:
                for p in tmp.glob("*"):
                    p.unlink(missing_ok=True)
                tmp.rmdir()
                raise
            fsync_dir(self.root)
            self._write_pointer("LAST_VERSION", str(version))
        model.model_version = str(version)
        return model_id

    def load(self, model_id: str) -> Detector:
        """The model ``model_id``, verified against its recorded content hash."""
        meta = self._read_meta(model_id)
        d = self._dir(model_id)
        arrays: dict[str, np.ndarray] = {}
        for name, info in meta["files"].items():
            path = d / name
            try:
                data = path.read_bytes()
            except OSError as e:
                raise CorruptModel(f"{path}: cannot read model file: {e}") from e
            got = _sha256(data)
            if got != info.get("sha256"):
                raise CorruptModel(f"{path}: content hash mismatch (recorded {info.get('sha256')}, file {got})")
            if name.endswith(".npz"):
                try:
                    with np.load(io.BytesIO(data), allow_pickle=False) as z:
                        arrays.update({k: z[k] for k in z.files})
                except Exception as e:
                    raise CorruptModel(f"{path}: unreadable arrays: {e}") from e
        model_type = meta["model_type"]
        loader = self.loaders.get(model_type)
        if loader is None:
            raise ModelStoreError(
                f"{d / META_FILE}: no loader for model_type {model_type!r} (known: {sorted(self.loaders)})"
            )
        try:
            model = loader(arrays, meta)
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptModel(f"{d}: cannot build {model_type} model: {e!r}") from e
        model.model_version = str(meta["model_version"])
        return model

    def info(self, model_id: str) -> ModelInfo:
        meta = self._read_meta(model_id)
        return ModelInfo(
            model_id=model_id,
            model_type=meta["model_type"],
            model_version=str(meta["model_version"]),
            created_at=str(meta.get("created_at", "")),
            path=self._dir(model_id),
            meta=meta,
        )

    def list(self) -> list[ModelInfo]:
        """Every readable model, oldest version first (unreadable ones are skipped)."""
        out = []
        for d in self.root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and _ID_RE.match(d.name):
                try:
                    out.append(self.info(d.name))
                except ModelStoreError:
                    continue
        return sorted(out, key=lambda m: int(m.model_version))

    # ------------------------------------------------------------------ pointers

    def active(self) -> str | None:
        """The id the ACTIVE pointer names, or None."""
        return self._read_pointer("ACTIVE")

    def set_active(self, model_id: str) -> None:
        """Point ACTIVE at ``model_id`` (atomically; the model must load)."""
        self.load(model_id)
        self._write_pointer("ACTIVE", model_id)

    def load_active(self) -> Detector | None:
        model_id = self.active()
        return None if model_id is None else self.load(model_id)

    def shadow(self) -> str | None:
        return self._read_pointer("SHADOW")

    def set_shadow(self, model_id: str | None) -> None:
        """Point SHADOW at ``model_id``; None clears it."""
        if model_id is None:
            (self.root / "SHADOW").unlink(missing_ok=True)
            fsync_dir(self.root)
            return
        self.load(model_id)
        self._write_pointer("SHADOW", model_id)

    # ------------------------------------------------------------------ evaluations

    def save_evaluation(self, model_id: str, key: str, evaluation: dict[str, Any]) -> Path:
        """Store an evaluation of ``model_id`` (on dataset ``key``, e.g. ``"parts@3"``).

        Kept in ``<model>/evaluations/<key>.json`` beside the model; the model's own files
        are not touched (an evaluation can be redone, the model cannot change).
        """
        if not _ID_RE.match(key or "") and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*@\d+$", key or ""):
            raise ValueError(f"invalid evaluation key {key!r}")
        self._read_meta(model_id)
        d = self._dir(model_id) / "evaluations"
        d.mkdir(exist_ok=True)
        tmp = d / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        write_synced(tmp, json.dumps(evaluation, indent=2, sort_keys=True).encode())
        os.replace(tmp, d / f"{key}.json")
        fsync_dir(d)
        return d / f"{key}.json"

    def evaluations(self, model_id: str) -> dict[str, dict[str, Any]]:
        """Every stored evaluation of ``model_id``, by dataset key (unreadable ones skipped)."""
        d = self._dir(model_id) / "evaluations"
        out: dict[str, dict[str, Any]] = {}
        for p in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return out

    # ------------------------------------------------------------------ internals

    def _dir(self, model_id: str) -> Path:
        if not _ID_RE.match(model_id or ""):
            raise ModelNotFound(f"invalid model id {model_id!r}")
        return self.root / model_id

    def _read_meta(self, model_id: str) -> dict[str, Any]:
        d = self._dir(model_id)
        if not d.is_dir():
            raise ModelNotFound(f"no model {model_id!r} in {self.root} (no directory {d})")
        path = d / META_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise CorruptModel(f"{path}: missing") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorruptModel(f"{path}: unreadable model metadata: {e}") from e
        missing = [k for k in ("model_type", "model_version", "files") if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise CorruptModel(f"{path}: missing keys {missing}")
        if not isinstance(meta["files"], dict):
            raise CorruptModel(f"{path}: 'files' must map file names to hashes")
        return meta

    def _next_version(self) -> int:
        last = int(self._read_pointer("LAST_VERSION") or 0)
        for d in self.root.iterdir():
            if d.is_dir() and not d.name.startswith("."):
                try:
                    last = max(last, int(json.loads((d / META_FILE).read_text())["model_version"]))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return last + 1

    def _read_pointer(self, name: str) -> str | None:
        try:
            value = (self.root / name).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return value or None

    def _write_pointer(self, name: str, value: str) -> None:
        tmp = self.root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        write_synced(tmp, (value + "\n").encode())
        os.replace(tmp, self.root / name)
        fsync_dir(self.root)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise saves across processes (version numbers must not collide)."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

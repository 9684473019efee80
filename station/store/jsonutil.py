"""JSON helpers shared by the record, the audit chain and the database columns.

Everything that goes into a JSON column passes :func:`to_jsonable` first, so numpy scalars,
datetimes and enums are plain JSON and non-finite floats (NaN, inf) become ``null`` - they
are not valid JSON and cloud consumers (Athena, Step Functions) reject them.
"""
from __future__ import annotations

import enum
import json
import math
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

import numpy as np

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, UTC: sorts as text


def iso_utc(dt: datetime | float | None = None) -> str:
    """A UTC timestamp in the store's one text format (now if ``dt`` is None)."""
    if dt is None:
        dt = datetime.now(timezone.utc)
    elif isinstance(dt, (int, float)):
        dt = datetime.fromtimestamp(dt, timezone.utc)
    elif dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: pass a timezone-aware time")
    return dt.astimezone(timezone.utc).strftime(ISO_FORMAT)


def parse_iso_utc(text: str) -> datetime:
    return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=timezone.utc)


def to_jsonable(obj: Any) -> Any:
    """A deep copy of ``obj`` made only of JSON types."""
    # Enums and numpy scalars first: a str-enum is a str and np.float64 is a float.
    if isinstance(obj, (enum.Enum, np.generic)):
        return to_jsonable(obj.value if isinstance(obj, enum.Enum) else obj.item())
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, datetime):
        return iso_utc(obj)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "to_json"):
        return to_jsonable(obj.to_json())
    raise TypeError(f"cannot store {type(obj).__name__} as JSON: {obj!r}")


def dumps(obj: Any) -> str:
    """Compact JSON for database columns (strict: no NaN)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, compact) - what hashes are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

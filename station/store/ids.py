"""Time-sortable inspection ids (ULID: 48-bit millisecond time + 80 random bits).

26 characters of Crockford base32, so ids sort as text in the order they were made, even
within one millisecond (the random part is incremented, ULID's "monotonic" mode).
"""
from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_inspection_id(now: float | None = None) -> str:
    """A new ULID; strictly increasing within this process."""
    global _last_ms, _last_rand
    ms = int((time.time() if now is None else now) * 1000)
    with _lock:
        if ms <= _last_ms:  # same millisecond (or the clock stepped back): keep order
            ms = _last_ms
            rand = _last_rand + 1
            if rand >= 1 << 80:  # 2^80 ids in one ms will not happen; stay correct anyway
                ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # top bit free for increments
        _last_ms, _last_rand = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def inspection_id_time(inspection_id: str) -> float:
    """The creation time (epoch seconds) encoded in an id."""
    ms = 0
    for ch in inspection_id[:10].upper():
        ms = (ms << 5) | _ALPHABET.index(ch)
    return ms / 1000.0

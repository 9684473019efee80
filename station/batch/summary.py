"""Run summaries: per shard, merged over shards, and the line-vs-new comparison matrix."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from station.batch.rows import DECISIONS, yield_fraction

CHANGED_EXAMPLES = 50


def _yield(counts: dict[str, int]) -> float | None:
    y = yield_fraction(counts)
    return None if y is None else round(y, 6)


def compare_matrix(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """``matrix[line decision][new decision]`` over rows that have a line decision."""
    matrix: dict[str, dict[str, int]] = {}
    changed: list[dict[str, Any]] = []
    compared = n_changed = 0
    for r in rows:
        line = r.get("line_decision")
        if line is None:
            continue
        compared += 1
        new = r.get("decision")
        cell = matrix.setdefault(line, {})
        cell[new] = cell.get(new, 0) + 1
        if line != new:
            n_changed += 1
            if len(changed) < CHANGED_EXAMPLES:
                changed.append({k: r.get(k) for k in ("image", "part_id", "inspection_id", "line_decision",
                                                      "decision", "score", "confidence")})
    if not compared:
        return None
    return {"compared": compared, "changed": n_changed, "matrix": matrix, "changed_examples": changed}


def summarize(rows: Iterable[dict[str, Any]], **info: Any) -> dict[str, Any]:
    """One shard's summary from all its rows (those of earlier, interrupted runs included)."""
    rows = list(rows)
    counts = Counter(r.get("decision") for r in rows)
    errors = [r for r in rows if r.get("error")]
    error_kinds = Counter(str(r["error"]).split(":", 1)[0] for r in errors)
    out = {
        **info,
        "images": len(rows),
        "decisions": {d: counts.get(d, 0) for d in DECISIONS},
        "yield": _yield(counts),
        "errors": len(errors),
        "error_kinds": dict(error_kinds),
        "error_examples": [{"image": r.get("image"), "error": r.get("error")} for r in errors[:20]],
        "spec_checked": sum(1 for r in rows if r.get("spec_checked")),
        "compare": compare_matrix(rows),
    }
    return out


def merge(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's summary from its shard summaries (any subset; ``complete`` says if all)."""
    if not shards:
        raise ValueError("no shard summaries to merge")
    shards = sorted(shards, key=lambda s: s.get("shard", 0))
    expected = max(int(s.get("shards", 1)) for s in shards)
    decisions = {d: sum(s["decisions"].get(d, 0) for s in shards) for d in DECISIONS}
    kinds: Counter = Counter()
    matrix: dict[str, dict[str, int]] = {}
    compared = changed = 0
    examples: list = []
    for s in shards:
        kinds.update(s.get("error_kinds", {}))
        cmp = s.get("compare")
        if cmp:
            compared += cmp["compared"]
            changed += cmp["changed"]
            examples += cmp["changed_examples"]
            for line, row in cmp["matrix"].items():
                for new, n in row.items():
                    matrix.setdefault(line, {})[new] = matrix.setdefault(line, {}).get(new, 0) + n
    present = sorted(int(s.get("shard", 0)) for s in shards)
    first = shards[0]
    return {
        "run_id": first.get("run_id"),
        "date": first.get("date"),
        "model": first.get("model"),
        "inputs": first.get("inputs"),
        "shards": expected,
        "shards_present": present,
        "complete": present == list(range(expected)) and all(s.get("complete") for s in shards),
        "images": sum(s["images"] for s in shards),
        "decisions": decisions,
        "yield": _yield(decisions),
        "errors": sum(s["errors"] for s in shards),
        "error_kinds": dict(kinds),
        "spec_checked": sum(s.get("spec_checked", 0) for s in shards),
        # shards run in parallel: the run's rate is the sum of the shards' rates
        "images_per_s": round(sum(s.get("images_per_s") or 0.0 for s in shards), 3),
        "started_at": min(s.get("started_at") or "" for s in shards) or None,
        "finished_at": max(s.get("finished_at") or "" for s in shards) or None,
        "compare": ({"compared": compared, "changed": changed, "matrix": matrix,
                     "changed_examples": examples[:CHANGED_EXAMPLES]} if compared else None),
    }


def format_matrix(cmp: dict[str, Any]) -> str:
    """The comparison as a small text table (line decision rows x new decision columns)."""
    cols = list(DECISIONS)
    lines = ["line \\ new".ljust(14) + "".join(c[:13].rjust(14) for c in cols)]
    for line in DECISIONS:
        row = cmp["matrix"].get(line)
        if row:
            lines.append(line.ljust(14) + "".join(str(row.get(c, 0)).rjust(14) for c in cols))
    lines.append(f"{cmp['changed']} of {cmp['compared']} decisions would change")
    return "\n".join(lines)

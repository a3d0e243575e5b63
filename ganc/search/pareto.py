"""Non-dominated fronts (all objectives minimized), plain Python."""
from __future__ import annotations

import math
from typing import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is no worse than ``b`` in every objective and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(rows: list[dict], objectives: Sequence[str]) -> list[dict]:
    """The rows no other row dominates (rows with a missing/NaN objective are left out),
    sorted by the objectives; rows with equal objectives are all kept."""
    def vec(r):
        return tuple(float(r[o]) for o in objectives)

    ok = [r for r in rows if all(r.get(o) is not None and math.isfinite(float(r[o]))
                                 for o in objectives)]
    vecs = [vec(r) for r in ok]
    front = [r for r, v in zip(ok, vecs) if not any(dominates(w, v) for w in vecs)]
    return sorted(front, key=vec)


__all__ = ["dominates", "pareto_front"]

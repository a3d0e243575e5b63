"""Resource requests the autoscaler can act on, and waiting for them (the Ray edge).

Every Ray Train worker, FID actor and pruning trial asks for what it uses: CPUs, a GPU
(or a share of one) when the run's placement is on GPU, and ``scale.resources`` (custom
resources, e.g. ``{accel: 1}``). :func:`reserve` asks for a gang of such bundles as one
placement group, which is what Ray's autoscaler scales up for, and waits at most
``scale.wait_s`` for it; a request the cluster cannot meet fails with one line naming the
missing resource (at once when the cluster provably cannot get it: nothing has it and its
autoscaler, whose node types :mod:`ganc.cluster` read, cannot add it).
"""
from __future__ import annotations

import time
from typing import Optional

from . import cluster as clusters
from .errors import GancError


class ResourceError(GancError):
    """Resources a stage asked for that the cluster did not provide in time."""


def worker_bundle(cpus: float, use_gpu: bool, resources: Optional[dict] = None,
                  gpu: float = 1.0) -> dict:
    """What one worker asks for: CPUs, a GPU (share) on a GPU placement, custom resources."""
    b = {"CPU": float(cpus)} if cpus else {}
    if use_gpu and gpu > 0:
        b["GPU"] = float(gpu)
    b.update({k: float(v) for k, v in (resources or {}).items()})
    return b


def _fmt(bundle: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in bundle.items()) + "}"


def shortfall(bundles: list, cluster) -> list[str]:
    """Resources the bundles need in total that the cluster cannot have even after its
    autoscaler added every node it may (as 'GPU: need 2, cluster 0 + autoscaler 0')."""
    need: dict = {}
    for b in bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + float(v)
    out = []
    for k, v in need.items():
        have, add = float(cluster.resources.get(k, 0) or 0), cluster.addable(k)
        if have + add + 1e-9 < v:
            out.append(f"{k}: need {v:g}, the cluster has {have:g}"
                       + (f" and its autoscaler can add {add:g}" if cluster.node_types else
                          " and no autoscaler node type offers it"))
    return out


def reserve(bundles: list, wait_s: float, what: str, cluster=None, strategy: str = "PACK",
            keep: bool = False):
    """Reserve ``bundles`` as one placement group, waiting at most ``wait_s`` seconds.

    Returns the placement group when ``keep`` (the caller schedules into it and removes
    it), else removes it once it was granted (the request made the autoscaler start what
    was missing; the caller's own request then finds it). Raises :class:`ResourceError`
    naming the missing resource."""
    bundles = [b for b in bundles if b]
    if not bundles:
        return None
    import ray  # deferred: ray
    from ray.util.placement_group import placement_group, remove_placement_group  # deferred: ray
    cluster = cluster or clusters.current()
    missing = shortfall(bundles, cluster)
    if missing and cluster.autoscaler_known:
        raise ResourceError(f"{what} need {len(bundles)} x {_fmt(bundles[0])} that this Ray "
                            f"cluster cannot provide ({'; '.join(missing)})")
    pg = placement_group(bundles, strategy=strategy)
    t0 = time.time()
    ready, _ = ray.wait([pg.ready()], timeout=max(0.0, float(wait_s)))
    if not ready:
        remove_placement_group(pg)
        now = clusters.current()
        missing = shortfall(bundles, now) or [
            "they exist but other work holds them" if not now.node_types else
            "the autoscaler did not start the nodes in time"]
        raise ResourceError(f"{what} need {len(bundles)} x {_fmt(bundles[0])}; not granted "
                            f"within scale.wait_s={float(wait_s):g}s "
                            f"({'; '.join(missing)})")
    waited = time.time() - t0
    if waited > 5:
        print(f"[resources] {what}: granted after {waited:.0f}s", flush=True)
    if keep:
        return pg
    remove_placement_group(pg)
    return None


__all__ = ["ResourceError", "worker_bundle", "reserve", "shortfall"]

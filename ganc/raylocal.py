"""Starting a local Ray bound to loopback.

``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a loopback
address by the machine's routable one unless multi-node mode is off
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which it reads at import time. ``init_local``
turns it off for this process and the Ray processes it starts, so the GCS, raylet, workers
and object transfers all listen on 127.0.0.1. Connecting to an existing cluster
(``RAY_ADDRESS`` set, e.g. inside ``ray job submit``) leaves all of this alone.
"""
from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_env() -> dict:
    """Environment for Ray processes that must stay on loopback."""
    return {_SINGLE_NODE_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}


def init_local(num_cpus: int | None = None, num_gpus: int | None = None, **kw) -> bool:
    """Start (or join, when ``RAY_ADDRESS`` names one) a Ray; True if started here."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kw)
        return True
    os.environ.update(loopback_env())
    import ray._private.ray_constants as ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = False
    kw.setdefault("include_dashboard", False)
    kw.setdefault("log_to_driver", True)
    ray.init(address="local", _node_ip_address=LOOPBACK, num_cpus=num_cpus, num_gpus=num_gpus,
             **kw)
    return True

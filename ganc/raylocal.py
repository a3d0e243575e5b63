"""Connecting to Ray: join the cluster this host belongs to, or start a private one on
loopback.

:func:`init_local` tries, in order:

1. ``RAY_ADDRESS`` (set inside ``ray job submit``, or by the user): join that cluster;
2. unless a private instance is asked for (``private=True`` or ``GANC_RAY_PRIVATE=1``),
   the cluster that ``ray start`` recorded on this host (the address file in Ray's temp
   dir, which is what ``ray.init(address="auto")`` picks first): join it, e.g. on a node
   of a running cluster;
3. otherwise start a private Ray bound to 127.0.0.1.

and says on stderr which it did. Tests and benchmarks force step 3 (other people's Ray
clusters may run on the same machine; a test must never join them).

A private Ray stays on loopback: ``ray.init(_node_ip_address="127.0.0.1")`` alone is not
enough, since Ray replaces a loopback address by the machine's routable one unless
multi-node mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read at import time).
``init_local`` turns it off for this process and the Ray processes it starts, so the GCS,
raylet, workers, object transfers and the dashboard all listen on 127.0.0.1. The dashboard
runs (on a free loopback port, named to the instance's processes in
``RAY_API_SERVER_ADDRESS``) because Ray Train's placement-group cleaner polls Ray's State
API, which the dashboard serves: without it every training run logged "Failed to query Ray
Train Controller actor state" once a second, and without the address the cleaner's client
looks for "the" Ray of the host and fails when several run.
"""
from __future__ import annotations

import os
import socket
import sys

LOOPBACK = "127.0.0.1"
PRIVATE_ENV = "GANC_RAY_PRIVATE"
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


def loopback_env() -> dict:
    """Environment for Ray processes that must stay on loopback."""
    return {_SINGLE_NODE_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}


def private_requested() -> bool:
    return os.environ.get(PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def recorded_address(temp_dir: str | None = None) -> str | None:
    """The GCS address ``ray start --head`` recorded on this host (None if none)."""
    from ray._common.utils import get_ray_address_file  # deferred: ray
    path = get_ray_address_file(temp_dir)
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _say(msg: str) -> None:
    print(f"[ray] {msg}", file=sys.stderr, flush=True)


def _join_kw(kw: dict) -> dict:
    """Options that make sense when connecting to a running cluster."""
    return {k: v for k, v in kw.items()
            if k not in ("include_dashboard", "dashboard_host", "dashboard_port",
                         "object_store_memory", "resources", "_node_ip_address")}


def init_local(num_cpus: int | None = None, num_gpus: int | None = None, *,
               private: bool | None = None, temp_dir: str | None = None, **kw) -> bool:
    """Join a running Ray (``RAY_ADDRESS``, or the cluster ``ray start`` recorded on this
    host) or start a private one on 127.0.0.1; prints which. Returns True when this call
    connected (the caller disconnects with ``ray.shutdown()``), False when Ray was already
    initialised in this process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray  # deferred: ray
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **_join_kw(kw))
        _say(f"joined the Ray cluster at {address} (RAY_ADDRESS): {_describe()}")
        return True
    if private is None:
        private = private_requested()
    if not private:
        recorded = recorded_address(temp_dir)
        if recorded:
            try:
                ray.init(address=recorded, **_join_kw(kw))
                _say(f"joined the Ray cluster running on this host at {recorded}: "
                     f"{_describe()}")
                return True
            except (ConnectionError, RuntimeError) as e:
                _say(f"could not join the Ray cluster recorded at {recorded} "
                     f"({str(e).strip().splitlines()[0][:120] if str(e).strip() else e!r}); "
                     "starting a private one")
    _start_private(num_cpus, num_gpus, temp_dir, **kw)
    why = "as asked" if private else "no Ray cluster runs on this host"
    _say(f"started a private Ray on {LOOPBACK} ({why}): {_describe()}")
    return True


def _start_private(num_cpus, num_gpus, temp_dir, **kw) -> None:
    import ray  # deferred: ray
    os.environ.update(loopback_env())
    import ray._private.ray_constants as ray_constants  # deferred: ray
    ray_constants.ENABLE_RAY_CLUSTER = False
    kw.setdefault("include_dashboard", True)
    env = {}
    if kw["include_dashboard"]:
        kw.setdefault("dashboard_host", LOOPBACK)
        kw.setdefault("dashboard_port", _free_port())
        # The State API clients inside this Ray's processes (Ray Train's cleaner) would
        # otherwise look for "the" Ray of this host and fail when several run.
        env[_API_SERVER_ENV] = f"http://{kw['dashboard_host']}:{kw['dashboard_port']}"
    kw.setdefault("log_to_driver", True)
    if temp_dir:
        kw.setdefault("_temp_dir", temp_dir)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)            # inherited by the processes ray.init starts ...
    try:
        ray.init(address="local", _node_ip_address=LOOPBACK, num_cpus=num_cpus,
                 num_gpus=num_gpus, **kw)
    finally:                          # ... but not by anything this process starts later
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _describe() -> str:
    import ray  # deferred: ray
    try:
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    except Exception:  # pragma: no cover - describing is best effort
        return "resources unknown"
    parts = [f"{nodes} node{'s' if nodes != 1 else ''}"]
    for k in ("CPU", "GPU"):
        if res.get(k):
            parts.append(f"{res[k]:g} {k}")
    return ", ".join(parts)

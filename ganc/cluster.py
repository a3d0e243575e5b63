"""What the Ray cluster has, and what its autoscaler can add.

:func:`current` describes the cluster this process is connected to: the alive nodes and
their resources, and the worker node types an autoscaler may start. Ray has no public API
for the latter, so it is read from the first of:

1. the cluster config in the GCS (``ray._private.state.state.get_cluster_config()``,
   what Ray Train itself consults; reported by KubeRay and newer autoscalers);
2. the autoscaling config file of the cluster's autoscaler process on this host (the
   ``--autoscaling-config`` of the monitor whose ``--gcs-address`` is this cluster's: with
   ``ray up`` that is the head's ``~/ray_bootstrap_config.yaml``, and jobs submitted with
   ``ray job submit`` run their driver on the head; the fake multi-node autoscaler of
   Ray's test utilities works the same way).

A cluster whose autoscaler cannot be read counts only what is alive. Without Ray (a local
runner) :func:`local_machine` describes this machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import yaml

UNLIMITED = 1 << 30


@dataclass(frozen=True)
class NodeType:
    """A worker node type an autoscaler can start (``max_workers`` of them)."""

    name: str
    resources: dict
    max_workers: int
    min_workers: int = 0


@dataclass
class ClusterInfo:
    nodes: int                              # alive nodes
    resources: dict                         # total resources of the alive nodes
    node_types: list = field(default_factory=list)   # NodeType, workers only
    autoscaler: str = ""                    # where node_types were read ('' : none)
    local: bool = False                     # no Ray: this machine alone
    # Whether node_types is all the cluster can add (its autoscaler's config was read, or
    # its autoscaler runs here without one, i.e. cannot add nodes). False when the
    # autoscaler runs elsewhere: a request may then be met later, so it is waited for.
    autoscaler_known: bool = True

    @property
    def can_autoscale(self) -> bool:
        return any(t.max_workers > 0 for t in self.node_types)

    @property
    def multi_node(self) -> bool:
        """More than one node now, or an autoscaler that can add nodes."""
        return self.nodes > 1 or self.can_autoscale

    def addable(self, resource: str) -> float:
        """How much of ``resource`` the autoscaler can add (0 without an autoscaler)."""
        total = 0.0
        for t in self.node_types:
            per_node = float(t.resources.get(resource, 0) or 0)
            if per_node > 0 and t.max_workers > 0:
                total += per_node * min(t.max_workers, UNLIMITED)
        return total

    def capacity(self, resource: str) -> float:
        """What the cluster has of ``resource`` now plus what its autoscaler can add."""
        return float(self.resources.get(resource, 0) or 0) + self.addable(resource)

    def types_with(self, resource: str) -> list[str]:
        return [t.name for t in self.node_types
                if t.max_workers > 0 and float(t.resources.get(resource, 0) or 0) > 0]

    def describe(self) -> str:
        parts = [f"{self.nodes} node{'s' if self.nodes != 1 else ''}"]
        for k in ("CPU", "GPU"):
            if self.resources.get(k):
                parts.append(f"{self.resources[k]:g} {k}")
        if self.node_types:
            parts.append("autoscaler node types " + ", ".join(
                f"{t.name} (max {t.max_workers}, {_fmt_res(t.resources)})"
                for t in self.node_types))
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"nodes": self.nodes, "resources": dict(self.resources),
                "multi_node": self.multi_node, "autoscaler": self.autoscaler,
                "node_types": [{"name": t.name, "resources": dict(t.resources),
                                "max_workers": t.max_workers, "min_workers": t.min_workers}
                               for t in self.node_types]}


def _fmt_res(res: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(res.items())
                     if k in ("CPU", "GPU") or not k.startswith(("node:", "memory",
                                                                  "object_store")))


# ---------------------------------------------------------------- parsing (no Ray)
def node_types_from_autoscaling_config(conf: dict) -> list[NodeType]:
    """Worker node types of a cluster-launcher / autoscaler config (``available_node_types``
    minus the head type, with the cluster-wide ``max_workers`` cap applied)."""
    if not isinstance(conf, dict):
        return []
    types = conf.get("available_node_types") or {}
    head = conf.get("head_node_type")
    cap = conf.get("max_workers")
    cap = UNLIMITED if cap is None else int(cap)
    out = []
    for name, nt in types.items():
        if name == head or not isinstance(nt, dict):
            continue
        mx = nt.get("max_workers")
        mx = cap if mx is None else min(int(mx), cap)
        res = {str(k): float(v) for k, v in (nt.get("resources") or {}).items()
               if isinstance(v, (int, float))}
        out.append(NodeType(str(name), res, max(0, mx), int(nt.get("min_workers", 0) or 0)))
    return out


def node_types_from_cluster_config(cc) -> list[NodeType]:
    """Node types of the GCS cluster config (``autoscaler_pb2.ClusterConfig``)."""
    out = []
    for g in getattr(cc, "node_group_configs", []) or []:
        mx = int(g.max_count)
        out.append(NodeType(g.name, {k: float(v) for k, v in dict(g.resources).items()},
                            UNLIMITED if mx == -1 else max(0, mx), int(g.min_count)))
    return out


def find_autoscaling_config(gcs_address: str, proc: str = "/proc") -> Optional[str]:
    """The ``--autoscaling-config`` file of the autoscaler (monitor) process of the cluster
    at ``gcs_address`` running on this host, or None."""
    return find_monitor(gcs_address, proc)[1]


def find_monitor(gcs_address: str, proc: str = "/proc") -> tuple[bool, Optional[str]]:
    """(whether a process of the cluster at ``gcs_address`` with an autoscaler's arguments
    runs on this host, the ``--autoscaling-config`` file it was given or None). A monitor
    without a config watches a fixed set of nodes: it cannot add any."""
    found = False
    if not gcs_address or not os.path.isdir(proc):
        return False, None
    want = f"--gcs-address={gcs_address}"
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if want not in args or not any(a.endswith("monitor.py") for a in args):
            continue
        found = True
        for a in args:
            if a.startswith("--autoscaling-config="):
                path = os.path.expanduser(a.split("=", 1)[1])
                if os.path.isfile(path):
                    return True, path
    return found, None


def read_autoscaling_config(path: str) -> list[NodeType]:
    try:
        with open(path) as f:
            return node_types_from_autoscaling_config(yaml.safe_load(f))
    except (OSError, yaml.YAMLError):
        return []


# ---------------------------------------------------------------- Ray edge
def _autoscaler_node_types(gcs_address: str) -> tuple[list[NodeType], str, bool]:
    """(node types, where they were read, whether that is all the cluster can add)."""
    try:
        from ray._private.state import state  # deferred: ray
        cc = state.get_cluster_config()
    except Exception:
        cc = None
    if cc is not None and getattr(cc, "node_group_configs", None):
        return node_types_from_cluster_config(cc), "gcs cluster config", True
    found, path = find_monitor(gcs_address)
    if path:
        return read_autoscaling_config(path), f"autoscaling config {path}", True
    return [], "", found


def current() -> ClusterInfo:
    """The cluster this process is connected to (Ray must be initialised)."""
    import ray  # deferred: ray
    alive = [n for n in ray.nodes() if n.get("Alive")]
    total: dict = {}
    for n in alive:
        for k, v in (n.get("Resources") or {}).items():
            total[k] = total.get(k, 0.0) + float(v)
    try:
        gcs = ray.get_runtime_context().gcs_address
    except Exception:  # pragma: no cover
        gcs = ""
    types, source, known = _autoscaler_node_types(gcs)
    return ClusterInfo(nodes=len(alive), resources=total, node_types=types, autoscaler=source,
                       autoscaler_known=known)


def local_machine() -> ClusterInfo:
    """This machine alone (no Ray): its CPUs and CUDA devices."""
    res = {"CPU": float(os.cpu_count() or 1)}
    try:
        import torch  # deferred: torch
        if torch.cuda.is_available():
            res["GPU"] = float(torch.cuda.device_count())
    except Exception:  # pragma: no cover
        pass
    return ClusterInfo(nodes=1, resources=res, local=True)


def describe_now() -> ClusterInfo:
    """:func:`current` when Ray is initialised, else :func:`local_machine`."""
    try:
        import ray  # deferred: ray
        if ray.is_initialized():
            return current()
    except ImportError:  # pragma: no cover
        pass
    return local_machine()


__all__ = ["ClusterInfo", "NodeType", "current", "local_machine", "describe_now",
           "node_types_from_autoscaling_config", "node_types_from_cluster_config",
           "find_autoscaling_config", "find_monitor"]

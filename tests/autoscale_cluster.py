"""Ray's fake multi-node autoscaler (``ray.cluster_utils.AutoscalingCluster``) on 127.0.0.1.

The head runs the real autoscaler (monitor) with Ray's fake node provider, which starts a
worker node (its own raylet, on this machine) when the autoscaler decides to launch one
of the configured node types, and stops it when it has been idle. Two parts of Ray's class
do not fit a shared machine, so they are replaced:

- ``start``/``shutdown`` run ``ray stop --force`` (every Ray of this user on the machine)
  and use the default port; here the head gets its own ports, temp dir and token, stays
  on loopback, and teardown kills only this cluster's processes;
- ``_generate_config`` reads ``fake_multi_node/example.yaml``, which the Ray 2.60 wheel
  does not ship; the same settings are written out below. The autoscaler reads that file
  too, as the provider's defaults, for ``type: fake_multinode``; so the provider is named
  as an external one (``type: external``, loaded by module path), whose defaults are built
  in: Ray's fake provider, giving each node a temp dir of its own
  (tests/fake_provider/loopback_provider.py says why).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from ray.autoscaler._private.fake_multi_node.node_provider import (
    FAKE_HEAD_NODE_ID,
    FAKE_HEAD_NODE_TYPE,
)
from ray.cluster_utils import AutoscalingCluster

from .cluster_cli import API_SERVER_ENV, MARKER, VENV, ClusterCLI, free_port

PROVIDER_DIR = Path(__file__).resolve().parent / "fake_provider"
PROVIDER = "loopback_provider.OwnTempDirFakeProvider"


class LoopbackAutoscalingCluster(AutoscalingCluster, ClusterCLI):
    def __init__(self, head_resources: dict, worker_node_types: dict, env: dict | None = None,
                 autoscaler_v2: bool = True, idle_timeout_minutes: float = 0.1):
        """``worker_node_types``: autoscaler node types ({name: {resources, min_workers,
        max_workers, node_config}}); ``env``: extra environment of the head, and so of every
        node and job driver; ``autoscaler_v2``: the autoscaler `ray up` uses since Ray 2.50."""
        self.name = "ga" + uuid.uuid4().hex[:8]
        self.tmp = Path(tempfile.mkdtemp(prefix="ga", dir="/tmp"))   # short: socket paths
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_",))}
        self.env = {**base, **(env or {}), "PATH": f"{VENV}/bin:{base.get('PATH', '/usr/bin:/bin')}",
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
                    API_SERVER_ENV: self.dashboard, MARKER: self.name}
        super().__init__(head_resources, worker_node_types, autoscaler_v2=autoscaler_v2,
                         idle_timeout_minutes=idle_timeout_minutes)

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False,
                         **config_kwargs):
        provider = {"type": "external", "module": PROVIDER,
                    "node_temp_root": str(self.tmp / "nodes"),
                    # all nodes share 127.0.0.1: the autoscaler tells them apart by node id
                    "use_node_id_as_ip": True,
                    "disable_node_updaters": True, "disable_launch_config_check": True,
                    # new nodes join this head (the provider's default is port 6379)
                    "gcs_address": self.address}
        if autoscaler_v2:
            provider.update(launch_multiple=True, head_node_id=FAKE_HEAD_NODE_ID)
        types = {**worker_node_types,
                 FAKE_HEAD_NODE_TYPE: {"resources": dict(head_resources), "node_config": {},
                                       "max_workers": 0}}
        config = {"cluster_name": self.name, "max_workers": sum(
                      t.get("max_workers", 0) for t in worker_node_types.values()),
                  "provider": provider, "available_node_types": types,
                  "head_node_type": FAKE_HEAD_NODE_TYPE, "auth": {}, "upscaling_speed": 1.0,
                  "idle_timeout_minutes": 0.1, "docker": {}, "file_mounts": {},
                  "cluster_synced_files": [], "file_mounts_sync_continuously": False,
                  "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [],
                  "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
                  "head_start_ray_commands": [], "worker_start_ray_commands": []}
        config.update(config_kwargs)
        return config

    def start(self, _system_config=None, override_env=None) -> "LoopbackAutoscalingCluster":
        config = self.tmp / "autoscaling.json"
        config.write_text(json.dumps(self._config))
        resources = dict(self._head_resources)
        args = ["start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                f"--autoscaling-config={config}", f"--num-cpus={resources.pop('CPU', 0)}",
                f"--num-gpus={resources.pop('GPU', 0)}", "--include-dashboard=true",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--ray-client-server-port={free_port()}", f"--temp-dir={self.tmp}",
                "--disable-usage-stats"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        env = {"AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1",
               "PYTHONPATH": str(PROVIDER_DIR)}
        if self._autoscaler_v2:
            env.update(RAY_enable_autoscaler_v2="1", RAY_CLOUD_INSTANCE_ID=FAKE_HEAD_NODE_ID,
                       RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_NODE_ID)
        self.ray(*args, env={**self.env, **env, **(override_env or {})})
        return self

    def shutdown(self) -> None:
        self.kill_marked()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # The autoscaler re-reads its config at each update (AUTOSCALER_UPDATE_INTERVAL_S, 1 s
    # here) and Ray 2.60 logs this line as it does: one per update round.
    ROUND_MARK = "Dropping the empty legacy field worker_nodes"

    def update_rounds(self) -> int:
        """How many update rounds the autoscaler has run (counted in its log files)."""
        return max([p.read_text(errors="replace").count(self.ROUND_MARK)
                    for p in self.tmp.glob("session_*/logs/monitor*")] or [0])

    def monitor_log(self) -> str:
        """The autoscaler's log (launch and termination decisions)."""
        logs = sorted(self.tmp.glob("session_*/logs/monitor*.log")) + \
            sorted(self.tmp.glob("session_*/logs/monitor*.out")) + \
            sorted(self.tmp.glob("session_*/logs/monitor*.err"))
        return "\n".join(p.read_text(errors="replace") for p in logs)

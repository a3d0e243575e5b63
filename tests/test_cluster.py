"""cluster.yaml checked by Ray's own cluster-config validation; Dockerfile pins vs constraints."""
import re

import pytest
import yaml

from .helpers import REPO


@pytest.fixture(scope="module")
def cluster():
    with open(REPO / "cluster.yaml") as f:
        return yaml.safe_load(f)


def test_ray_validates_and_fills_defaults(cluster):
    # The same steps as `ray up`: fill the provider's defaults, then check the schema.
    import copy

    from ray.autoscaler._private.util import prepare_config, validate_config
    full = prepare_config(copy.deepcopy(cluster))
    validate_config(full)
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_wokers"] = 0
    with pytest.raises(Exception):
        validate_config(prepare_config(broken))
    # defaults filled by Ray: every node type has min/max workers
    for name, nt in full["available_node_types"].items():
        assert "min_workers" in nt and "max_workers" in nt, name
    assert full["head_node_type"] == "head"


def test_gpu_workers_autoscale_from_zero_and_head_is_cpu(cluster):
    types = cluster["available_node_types"]
    gpu = types["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    assert types["head"]["node_config"]["InstanceType"].startswith(("m", "c", "r"))


def test_docker_image_project_sync_and_role_without_keys(cluster):
    assert cluster["docker"]["image"].endswith(":0.1.0")
    assert "." in cluster["file_mounts"].values()
    text = (REPO / "cluster.yaml").read_text()
    for node in cluster["available_node_types"].values():
        assert "IamInstanceProfile" in node["node_config"]
    assert not re.search(r"AKIA[0-9A-Z]{12,}|aws_secret_access_key|aws_access_key_id", text, re.I)


def test_dashboard_bound_to_localhost(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


def _pins(text):
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([0-9][^\s\"',;]*)", text)}


def test_dockerfile_pins_match_constraints():
    constraints = _pins((REPO / "constraints.txt").read_text())
    docker = _pins((REPO / "docker" / "Dockerfile").read_text())
    for pkg in ("torch", "torchvision", "ray"):
        assert pkg in docker, f"Dockerfile does not pin {pkg}"
        assert docker[pkg] == constraints[pkg], (pkg, docker[pkg], constraints[pkg])
    assert "constraints.txt" in (REPO / "docker" / "Dockerfile").read_text()

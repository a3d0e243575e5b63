"""cluster.yaml and docker/Dockerfile, checked without AWS: Ray's own cluster-config
preparation and validation, the node commands run by bash the way Ray's node updater runs
them (with stubs for `ray`, `aws` and `docker`), and the image's real install lines."""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
import stat
import subprocess
import textwrap

import pytest
import yaml

from .helpers import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


@pytest.fixture(scope="module")
def cluster():
    with open(REPO / "cluster.yaml") as f:
        return yaml.safe_load(f)


# ------------------------------------------------------------------ Ray's own checks
def test_ray_validates_and_fills_defaults(cluster):
    # The same steps as `ray up`: fill the provider's defaults, then check the schema.
    from jsonschema.exceptions import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    from ganc.cluster import node_types_from_autoscaling_config
    full = prepare_config(copy.deepcopy(cluster))
    validate_config(full)
    # a misspelt node-type field is refused by Ray's schema, naming the field and the type
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_wokers"] = 0
    with pytest.raises(ValidationError,
                       match=r"Additional properties are not allowed \('min_wokers' was "
                             r"unexpected\)") as e:
        validate_config(prepare_config(broken))
    assert e.value.validator == "additionalProperties"
    assert list(e.value.path) == ["available_node_types", "gpu_worker"]
    # defaults filled: the head type declares no worker counts and gets none (0 and 0);
    # the declared counts of the worker types are kept
    declared = cluster["available_node_types"]
    assert "min_workers" not in declared["head"] and "max_workers" not in declared["head"]
    for name, nt in full["available_node_types"].items():
        want = (0, 0) if name == "head" else (declared[name]["min_workers"],
                                              declared[name]["max_workers"])
        assert (nt["min_workers"], nt["max_workers"]) == want, name
    assert full["head_node_type"] == "head"
    # the filled config is what the autoscaler runs with, and what ganc's placement reads:
    # the worker types with their GPUs and counts, never the head
    types = {t.name: t for t in node_types_from_autoscaling_config(full)}
    assert sorted(types) == sorted(n for n in declared if n != "head")
    for name, t in types.items():
        assert t.max_workers == min(declared[name]["max_workers"], full["max_workers"]), name
        assert t.resources.get("GPU") == declared[name]["resources"]["GPU"], name


# ------------------------------------------------------------------ node types
def test_head_runs_no_work_and_gpu_workers_autoscale_from_zero(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU")
    assert head["node_config"]["InstanceType"].startswith(("m", "c", "r"))
    workers = {n: t for n, t in types.items() if n != cluster["head_node_type"]}
    for name, t in workers.items():
        assert t["min_workers"] == 0 and t["max_workers"] >= 1, name
        # Declared, so the autoscaler (and ganc's placement, which reads the node types)
        # knows what a node will bring before one exists.
        assert t["resources"].get("GPU", 0) >= 1, name
        assert t["node_config"]["InstanceType"].startswith(("g", "p")), name
    gpus = sorted(t["resources"]["GPU"] for t in workers.values())
    assert gpus[0] == 1, "a small GPU node type"
    eight = [t for t in workers.values() if t["resources"]["GPU"] == 8]
    assert eight and eight[0]["node_config"]["InstanceType"].startswith(("p4d.", "p5.")), \
        "an 8-GPU node type (p4d/p5 class)"
    assert sum(t["max_workers"] for t in workers.values()) >= cluster["max_workers"] > 0


def test_every_node_boots_one_pinned_ami(cluster):
    amis = {n: t["node_config"].get("ImageId", "")
            for n, t in cluster["available_node_types"].items()}
    for name, ami in amis.items():
        assert AMI_ID.match(ami), f"{name}: ImageId {ami!r} is not a pinned AMI id"
    assert len(set(amis.values())) == 1, amis
    text = (REPO / "cluster.yaml").read_text()
    assert "Ubuntu 22.04" in text and "/aws/service/deeplearning/ami/" in text, \
        "say which AMI it is and how to look it up for another region"


def test_roles_not_keys(cluster):
    text = (REPO / "cluster.yaml").read_text()
    for name, node in cluster["available_node_types"].items():
        assert "IamInstanceProfile" in node["node_config"], name
    assert not re.search(r"AKIA[0-9A-Z]{12,}|aws_secret_access_key|aws_access_key_id", text, re.I)


def test_dashboard_bound_to_localhost(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


def test_nothing_synced_from_the_laptop(cluster):
    # Code travels with `ray job submit --working-dir`, data and results through S3.
    assert not cluster.get("file_mounts")


# ------------------------------------------------------------------ commands, run by bash
STUB = textwrap.dedent("""\
    #!/usr/bin/env python3
    # Records how it was called (argv, environment, stdin when asked) and answers like
    # the real tool would for the calls cluster.yaml makes.
    import json, os, sys
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    entry = {"tool": name, "argv": args, "env": dict(os.environ)}
    if name == "docker" and "--password-stdin" in args:
        entry["stdin"] = sys.stdin.read()
    if name == "aws" and args[:2] == ["ssm", "get-parameter"]:
        sys.stdout.write(os.environ["STUB_TOKEN"] + "\\n")
    if name == "aws" and args[:2] == ["ecr", "get-login-password"]:
        sys.stdout.write(os.environ["STUB_PASSWORD"])
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\\n")
""")


def _dockerfile_env() -> dict:
    """The ENV of the image, as a container started from it sees it."""
    env = {}
    for instr in _instructions():
        if instr[0] == "ENV":
            for part in shlex.split(instr[1]):
                k, _, v = part.partition("=")
                env[k] = v
    return env


def _run_options_env(cluster) -> dict:
    env, opts = {}, cluster["docker"].get("run_options", [])
    for i, opt in enumerate(opts):
        for flag in ("--env=", "-e=", "--env ", "-e "):
            if opt.startswith(flag):
                k, _, v = opt[len(flag):].partition("=")
                env[k] = v
    return env


def _volumes(cluster) -> list[tuple[str, str, str]]:
    """(host path, container path, options) of every --volume in run_options."""
    out = []
    for opt in cluster["docker"].get("run_options", []):
        m = re.match(r"(?:--volume[= ]|-v[= ]?)(\S+)", opt)
        if m:
            src, dst, *mode = m.group(1).split(":")
            out.append((src, dst, mode[0] if mode else ""))
    return out


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ray", "aws", "docker"):
        p = bin_dir / tool
        p.write_text(STUB)
        p.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "calls.jsonl"
    token, password = "tok-" + os.urandom(12).hex(), "ecr-" + os.urandom(12).hex()

    def run(cmd: str, env: dict) -> tuple[list[dict], str]:
        full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "STUB_LOG": str(log),
                "STUB_TOKEN": token, "STUB_PASSWORD": password, **env}
        out = subprocess.run(["bash", "-c", cmd], env=full, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, (cmd, out.stdout, out.stderr)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return calls, out.stdout + out.stderr

    run.home, run.token, run.password = home, token, password
    return run


def _as_ray_runs_it(cmd: str, node_env: dict) -> str:
    """The command string Ray's node updater hands the shell (`export K=V;` in front)."""
    from ray.autoscaler._private.command_runner import _with_environment_variables
    return _with_environment_variables(cmd, node_env)


@pytest.mark.parametrize("kind", ["head", "worker"])
def test_ray_start_gets_token_auth_and_head_no_usage_stats(cluster, stubs, kind):
    cmds = cluster[f"{kind}_start_ray_commands"]
    node_type = cluster["head_node_type"] if kind == "head" else "gpu_worker"
    # What the launcher exports in front of start commands: the node type's resources,
    # and on the head RAY_USAGE_STATS_ENABLED from the LAPTOP's setting (here: on).
    updater_env = {"RAY_OVERRIDE_RESOURCES": cluster["available_node_types"][node_type]["resources"]}
    if kind == "head":
        updater_env["RAY_USAGE_STATS_ENABLED"] = 1
    container_env = {**_dockerfile_env(), **_run_options_env(cluster), "RAY_HEAD_IP": "10.0.0.1"}
    container_env.pop("PATH", None)  # the stubs' PATH stands in for the image's
    starts = []
    for cmd in cmds:
        calls, _ = stubs(_as_ray_runs_it(cmd, updater_env), container_env)
        starts += [c for c in calls if c["tool"] == "ray" and c["argv"][:1] == ["start"]]
    assert len(starts) == 1, starts
    argv, env = starts[0]["argv"], starts[0]["env"]
    assert env.get("RAY_AUTH_MODE") == "token"
    assert "RAY_AUTH_TOKEN" not in env, "the token itself must not be in the config"
    mounted = {dst: (src, mode) for src, dst, mode in _volumes(cluster)}
    token_path = env.get("RAY_AUTH_TOKEN_PATH", "")
    assert token_path, "RAY_AUTH_TOKEN_PATH"
    holder = [d for d in mounted if token_path.startswith(d.rstrip("/") + "/")]
    assert holder and mounted[holder[0]][1] == "ro", (token_path, mounted)
    assert json.loads(env["RAY_OVERRIDE_RESOURCES"]) == updater_env["RAY_OVERRIDE_RESOURCES"]
    if kind == "head":
        assert "--disable-usage-stats" in argv or env.get("RAY_USAGE_STATS_ENABLED") == "0", \
            "usage stats stay on: the launcher's export wins over a VAR=value prefix"
        assert "--head" in argv
    else:
        assert "--address=10.0.0.1:6379" in argv


def test_no_assignment_prefix_on_a_shell_builtin(cluster):
    # `VAR=value ulimit ...; ray start` sets VAR for ulimit alone.
    builtin_prefix = re.compile(
        r"(?:^|[;&|(]\s*)(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)+"
        r"(?:ulimit|cd|export|umask|set|source|\.|true|:)(?:\s|;|$)")
    keys = [k for k in cluster if k.endswith("_commands")]
    for key in keys:
        for cmd in cluster[key]:
            assert not builtin_prefix.search(cmd), f"{key}: {cmd}"


def test_initialization_fetches_token_and_logs_in_to_ecr_without_leaking(cluster, stubs):
    ssh_home = f"/home/{cluster['auth']['ssh_user']}"
    calls, output = [], ""
    for cmd in cluster["initialization_commands"]:
        c, out = stubs(cmd, {})
        calls += c
        output += out
    # The token: from SSM (decrypted), into a file only its owner reads, at the host side
    # of the read-only volume that RAY_AUTH_TOKEN_PATH points into.
    ssm = [c for c in calls if c["tool"] == "aws" and c["argv"][:2] == ["ssm", "get-parameter"]]
    assert ssm and "--with-decryption" in ssm[0]["argv"]
    token_path = _run_options_env(cluster)["RAY_AUTH_TOKEN_PATH"]
    src = [(s, d) for s, d, _ in _volumes(cluster) if token_path.startswith(d.rstrip("/") + "/")]
    host_file = src[0][0] + token_path[len(src[0][1]):]
    assert host_file.startswith(ssh_home + "/"), host_file
    local = stubs.home / host_file[len(ssh_home) + 1:]
    assert local.read_text().strip() == stubs.token
    assert stat.S_IMODE(local.stat().st_mode) & 0o077 == 0, oct(local.stat().st_mode)
    assert stat.S_IMODE(local.parent.stat().st_mode) & 0o077 == 0
    # ECR: the password reaches docker on stdin, for the registry of the image.
    registry = cluster["docker"]["image"].split("/")[0]
    assert re.fullmatch(r"[0-9A-Z_]+\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com", registry)
    assert registry.split(".")[3] == cluster["provider"]["region"]
    logins = [c for c in calls if c["tool"] == "docker" and c["argv"][:1] == ["login"]]
    assert logins and logins[0]["stdin"] == stubs.password
    assert registry in logins[0]["argv"]
    # Nothing secret on a command line or in the output Ray logs.
    for c in calls:
        assert stubs.token not in " ".join(c["argv"]) and stubs.password not in " ".join(c["argv"])
    assert stubs.token not in output and stubs.password not in output


def test_no_ray_token_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert not [p for p in tracked if "auth_token" in os.path.basename(p)], tracked
    for p in tracked:
        path = REPO / p
        if path.suffix in (".pt", ".pth", ".png", ".npz", ".parquet") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        # A literal token value (not a variable or a placeholder) after RAY_AUTH_TOKEN=.
        for m in re.finditer(r"RAY_AUTH_TOKEN\s*[=:]\s*[\"']?([A-Za-z0-9_\-]{16,})", text):
            pytest.fail(f"{p}: a Ray token value {m.group(1)[:4]}... in the repository")


# ------------------------------------------------------------------ the image
def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, comments dropped, continuations joined."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _pip_installs() -> list[list[str]]:
    """The argument lists of every `pip install` that RUN instructions execute."""
    installs = []
    for word, rest in _instructions():
        if word != "RUN":
            continue
        for part in re.split(r"&&|;|\|\|", rest):
            args = shlex.split(part)
            for i in range(len(args) - 1):
                if os.path.basename(args[i]) in ("pip", "pip3") and args[i + 1] == "install":
                    installs.append(args[i + 2:])
    return installs


def _pins(text):
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([0-9][^\s\"',;]*)$",
                                 text, re.M)}


def test_dockerfile_installs_pinned_versions_with_boto3():
    constraints = _pins((REPO / "constraints.txt").read_text())
    installs = _pip_installs()
    assert installs, "no pip install in docker/Dockerfile"
    for args in installs:
        assert "constraints.txt" in args and args[args.index("constraints.txt") - 1] == "-c", args
    reqs = [a for args in installs for a in args if not a.startswith("-") and a != "constraints.txt"
            and a != "."]
    pinned = _pins("\n".join(reqs))
    # boto3: Ray's AWS node provider (the autoscaler on the head) needs it to launch nodes.
    for pkg in ("torch", "torchvision", "ray", "boto3"):
        assert pkg in pinned, f"docker/Dockerfile does not pip install {pkg}=="
        assert pinned[pkg] == constraints[pkg], (pkg, pinned[pkg], constraints[pkg])
    ray_req = next(r for r in reqs if r.lower().startswith("ray["))
    assert "default" in ray_req, "ray[default] carries the autoscaler's dependencies"


def test_image_base_by_digest_non_root_user_no_sudo():
    instrs = _instructions()
    froms = [rest for word, rest in instrs if word == "FROM"]
    assert froms and all(re.search(r"@sha256:[0-9a-f]{64}(\s|$)", f) for f in froms), froms
    users = [rest for word, rest in instrs if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    runs = " ".join(rest for word, rest in instrs if word == "RUN")
    assert not re.search(r"\bsudo\b", runs), "no sudo in the image"
    # uid 1000: the AMI's ubuntu user, owner of the token file the container mounts.
    assert re.search(rf"useradd\b[^&;]*--uid 1000\b[^&;]*\b{re.escape(users[-1])}\b", runs)
    # Ray's launcher puts its bootstrap files in the HOME of the image's ENV (else /root,
    # which the user cannot write).
    assert _dockerfile_env().get("HOME") == f"/home/{users[-1]}"
    apt = re.search(r"apt-get install[^&;]*", runs).group(0).split()
    for pkg in ("openssh-client", "rsync"):
        assert pkg in apt, f"{pkg}: the autoscaler on the head reaches workers with it"
    assert _dockerfile_env().get("RAY_USAGE_STATS_ENABLED") == "0"


# ------------------------------------------------------------------ `ray up`'s AWS steps
def test_ray_aws_bootstrap_and_launch_every_node_type(cluster, tmp_path, monkeypatch):
    """What `ray up` and the autoscaler do with AWS, against moto's in-process EC2 and IAM:
    Ray's AWS bootstrap (instance profiles, key pair, subnets, security group), one
    RunInstances per node type with its node_config (botocore checks every parameter), and
    each worker type's declared CPUs and GPUs against EC2's description of its instance."""
    moto = pytest.importorskip("moto", reason="needs moto for the in-process AWS APIs")
    import boto3

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto")
    monkeypatch.setenv("HOME", str(tmp_path))          # Ray writes the key pair to ~/.ssh
    account = "123456789012"                           # moto's account
    config = yaml.safe_load((REPO / "cluster.yaml").read_text().replace("ACCOUNT_ID", account))
    region = config["provider"]["region"]

    from ray.autoscaler._private.aws.config import bootstrap_aws
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
    from ray.autoscaler._private.util import prepare_config, validate_config
    from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_NODE_NAME, TAG_RAY_USER_NODE_TYPE

    # Neither reset nor remove moto's global state on start and stop: the session's S3
    # server (tests/conftest.py) runs on the same backends in this process, and a reset
    # would delete its bucket under every later test.
    mock = moto.mock_aws()
    mock.start(reset=False)
    try:
        iam = boto3.client("iam", region_name=region)
        profiles = {t["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
                    for t in config["available_node_types"].values()}
        for name in profiles:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")
            iam.create_instance_profile(InstanceProfileName=name)
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        full = prepare_config(copy.deepcopy(config))
        validate_config(full)
        booted = bootstrap_aws(full)
        provider = AWSNodeProvider(booted["provider"], booted["cluster_name"])
        for name, nt in booted["available_node_types"].items():
            kind = "head" if name == booted["head_node_type"] else "worker"
            provider.create_node(nt["node_config"], {TAG_RAY_NODE_KIND: kind,
                                                     TAG_RAY_USER_NODE_TYPE: name,
                                                     TAG_RAY_NODE_NAME: name}, 1)
        ec2 = boto3.client("ec2", region_name=region)
        launched = {i["InstanceType"]: i for r in ec2.describe_instances()["Reservations"]
                    for i in r["Instances"]}
        described = {t["InstanceType"]: t for t in ec2.describe_instance_types(
            InstanceTypes=sorted(launched))["InstanceTypes"]}
    finally:
        mock.stop(remove_data=False)
    for name, nt in config["available_node_types"].items():
        inst = launched[nt["node_config"]["InstanceType"]]
        assert inst["ImageId"] == nt["node_config"]["ImageId"], name
        assert inst["IamInstanceProfile"]["Arn"] == nt["node_config"]["IamInstanceProfile"]["Arn"]
        if name != config["head_node_type"]:   # the head declares CPU 0 on purpose
            info = described[inst["InstanceType"]]
            gpus = sum(g["Count"] for g in info.get("GpuInfo", {}).get("Gpus", []))
            assert nt["resources"] == {"CPU": info["VCpuInfo"]["DefaultVCpus"], "GPU": gpus}, name

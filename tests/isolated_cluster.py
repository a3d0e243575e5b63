"""A two-node Ray cluster on 127.0.0.1 whose nodes share no files: the worker node runs as
another Unix user, in a private mount namespace where the driver's files do not exist.

- head: run by this (root) process, ``--num-cpus=0`` so that every task and actor that
  needs a CPU goes to the worker node; its folders (Ray temp dir, HOME, cache) are 0700.
- worker node: a Unix user made for this cluster (``useradd``, removed at the end), its own
  HOME (``~/.aws`` for S3, ``~/.ray/auth_token`` for Ray's token, as on a real node) and Ray
  temp dir. It sees the Python installation and the virtual environment (bound back at
  their usual paths) and nothing else of the driver: the repository's parent folder, the
  driver's HOME and ``/tmp`` are empty tmpfs mounts in its namespace. So the job's code can
  only reach it through ``ray job submit --working-dir``, and data, weights and results
  only through S3 or Ray's object store. Where no mount namespace can be made (no
  CAP_SYS_ADMIN), it runs as the other user without one: the driver's 0700 folders stay
  out of its reach, and the Python installation and venv must be readable by others.

Both nodes stay on loopback (see tests/ray_start_loopback.py). Everything started is
stopped at the end: the head's processes carry a marker in their environment, the worker
node's processes belong to its user; nothing else is touched (never ``ray stop``).

Needs root (useradd); ``require_isolation()`` says why not, and ``start()`` raises
``NotIsolatable`` when the worker's user cannot run this Python, both for a skip.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .cluster_cli import (API_SERVER_ENV, MARKER, VENV, ClusterCLI, free_port, kill_all,
                          owned_by, pids)
from .helpers import REPO

PYTHON = VENV / "bin" / "python"
LOOPBACK_START = REPO / "tests" / "ray_start_loopback.py"
SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/dev", "/proc", "/sys",
               "/run", "/var", "/opt", "/home", "/tmp"}


class NotIsolatable(RuntimeError):
    """This machine cannot give the worker node its own user and view of the files."""


def require_isolation() -> str | None:
    """Why this machine cannot run an isolated cluster, or None."""
    if os.geteuid() != 0:
        return "needs root: creates a Unix user for the worker node"
    for tool in ("useradd", "userdel", "setpriv"):
        if not shutil.which(tool):
            return f"needs `{tool}` (util-linux / passwd) on PATH"
    return None


def namespace_unavailable() -> str | None:
    """Why no private mount namespace can hide the driver's files here, or None."""
    if not (shutil.which("unshare") and shutil.which("mount")):
        return "no `unshare`/`mount` on PATH"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                            "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --mount needs CAP_SYS_ADMIN: {probe.stderr.strip()[:160]}"
    return None


def _hide_roots(keep: list[Path]) -> list[Path]:
    """Folders the worker node must not see: the driver's HOME, the repository's parent
    (the repository, ../shared, sibling checkouts) and /tmp; plus any folder above a path it
    must use that other users cannot traverse (e.g. a 0700 parent of the clone)."""
    hide = {Path("/tmp"), Path.home().resolve()}
    parent = REPO.parent.resolve()
    hide.add(parent if str(parent) not in SYSTEM_DIRS else REPO.resolve())
    for path in keep:
        for anc in reversed(path.parents):
            if str(anc) == "/":
                continue
            if not os.stat(anc).st_mode & 0o001 and str(anc) not in SYSTEM_DIRS - {"/tmp"}:
                hide.add(anc)
                break
    # Keep only the outermost of nested folders.
    return sorted(h for h in hide if not any(o != h and o in h.parents for o in hide))


class IsolatedCluster(ClusterCLI):
    def __init__(self, head_env: dict, worker_files: dict[str, str], worker_env: dict | None = None,
                 worker_cpus: int = 2):
        """``head_env``: extra environment of the head (and of the job drivers it runs);
        ``worker_files``: files to put in the worker user's HOME ({relative path: text},
        written 0600, e.g. ``.aws/credentials``); ``worker_env``: extra environment of the
        worker node (no credentials: those go in files, as on a real node)."""
        self.token = secrets.token_hex(16)
        self.name = "gw" + secrets.token_hex(4)
        self.head_root = Path(tempfile.mkdtemp(prefix="gi", dir="/tmp"))     # 0700
        self.worker_root = Path(tempfile.mkdtemp(prefix="gw", dir="/tmp"))   # 0700, chowned
        self.head_tmp = self.head_root / "r"
        self.worker_tmp = self.worker_root / "r"
        self.driver_home = self.head_root / "home"
        self.worker_home = self.worker_root / "home"
        self.cache = self.head_root / "cache"
        self.token_file = self.head_root / "ray_auth_token"
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.worker_cpus = worker_cpus
        self.worker_files = worker_files
        self.worker_env = worker_env or {}
        self.uid = None
        self.user_created = False
        self.no_namespace = namespace_unavailable()   # why not, or None
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "RAY_", "GANC_"))}
        # Everything run on the head side: the head node, the job CLI ("the laptop"), and
        # through them the job drivers. Single-node mode keeps Ray's processes on loopback.
        self.env = {**base, "PATH": f"{VENV}/bin:{base.get('PATH', '/usr/bin:/bin')}",
                    "HOME": str(self.driver_home), "GANC_CACHE": str(self.cache),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                    API_SERVER_ENV: self.dashboard, MARKER: self.name, **head_env}

    # ------------------------------------------------------------------ start
    def start(self) -> "IsolatedCluster":
        for d in (self.head_tmp, self.driver_home, self.cache):
            d.mkdir(mode=0o700)
        self.token_file.write_text(self.token)
        self.token_file.chmod(0o600)
        self._seed_driver_cache()
        self._start_head()
        self._make_user()
        self._start_worker()
        self.wait_nodes(2)
        return self

    def _seed_driver_cache(self) -> None:
        """The driver's copy of the FID Inception weights, from this machine's cache when it
        has them (else ganc fetches them from the package index, GUIDE §3). The worker node
        gets no copy: whatever it needs must come through the store or the object store."""
        from ganc.metrics.inception_weights import FID_HELPER_FILE
        src = Path(os.environ.get("GANC_CACHE") or Path.home() / ".cache" / "ganc")
        src = src / "inception" / FID_HELPER_FILE
        if src.is_file():
            (self.cache / "inception").mkdir(parents=True)
            os.symlink(src, self.cache / "inception" / FID_HELPER_FILE)

    def _start_head(self) -> None:
        self.ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                 "--num-cpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={self.dashboard_port}",
                 f"--dashboard-agent-listen-port={free_port()}",
                 f"--ray-client-server-port={free_port()}", f"--temp-dir={self.head_tmp}",
                 "--disable-usage-stats")

    def _make_user(self) -> None:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", str(self.worker_home), "--shell", "/bin/sh", self.name],
                       check=True, capture_output=True, text=True)
        self.user_created = True
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        files = {".ray/auth_token": self.token, **self.worker_files}
        for rel, text in files.items():
            path = self.worker_home / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(text)
            path.chmod(0o600)
        self.worker_tmp.mkdir(mode=0o700)
        shutil.copy(LOOPBACK_START, self.worker_root / "ray_start_loopback.py")
        for dirpath, dirnames, filenames in os.walk(self.worker_root):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, self.uid, self.gid)

    def _worker_env(self) -> dict:
        return {"HOME": str(self.worker_home), "USER": self.name, "LOGNAME": self.name,
                "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "GANC_CACHE": str(self.worker_home / ".cache" / "ganc"),
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_AUTH_MODE": "token", API_SERVER_ENV: self.dashboard, MARKER: self.name,
                **self.worker_env}

    def run_as_worker(self, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
        """Run ``argv`` as the worker node's user, in a new private mount namespace where
        the driver's folders are hidden (processes it leaves behind stay in it). Where no
        namespace can be made, as that user only: the driver's 0700 folders stay out of its
        reach, but the Python installation and the venv must be readable by other users."""
        drop = "exec setpriv --reuid={} --regid={} --clear-groups env -i {} {}".format(
            self.uid, self.gid, " ".join(_q(f"{k}={v}") for k, v in self._worker_env().items()),
            " ".join(_q(a) for a in argv))
        if self.no_namespace:
            return subprocess.run(["bash", "-c", drop], capture_output=True, text=True,
                                  timeout=timeout, cwd="/")
        keep = sorted({Path(sys.base_prefix).resolve(), VENV.resolve(), self.worker_root})
        hide = _hide_roots(keep)
        # Open every folder to keep before hiding anything, hide, then bind each one back
        # at its own path from the open descriptor (its old path is covered by then).
        lines = ["set -eu", "umask 022"]
        lines += [f"exec {3 + i}<{_q(k)}" for i, k in enumerate(keep)]
        for h in hide:
            mode = "1777" if str(h) == "/tmp" else "0755"
            lines.append(f"mount -t tmpfs -o mode={mode},size=64m tmpfs {_q(h)}")
        for i, k in enumerate(keep):
            if any(h == k or h in k.parents for h in hide):
                lines.append(f"mkdir -p {_q(k)}")
                lines.append(f"mount --no-canonicalize --bind /proc/self/fd/{3 + i} {_q(k)}")
        lines += [f"exec {3 + i}<&-" for i in range(len(keep))]
        lines.append(drop)
        script = self.head_root / f"as-worker-{secrets.token_hex(3)}.sh"
        script.write_text("\n".join(lines) + "\n")
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                               "bash", str(script)], capture_output=True, text=True,
                              timeout=timeout, cwd="/")

    def _start_worker(self) -> None:
        # Can the worker's user run this Python at all (a venv or interpreter that only its
        # owner may read cannot be used by another user, whatever is mounted)?
        probe = self.run_as_worker([str(PYTHON), "-c", "import ray, torch"])
        if probe.returncode != 0:
            tail = probe.stderr.strip().splitlines()[-1:] or [""]
            why = (f"no private mount namespace ({self.no_namespace}), and " if
                   self.no_namespace else "")
            raise NotIsolatable(f"{why}the worker node's user cannot use {VENV} "
                                f"({tail[0][:200]}); its files must be readable by other users")
        out = self.run_as_worker(
            [str(PYTHON), str(self.worker_root / "ray_start_loopback.py"),
             f"--address={self.address}", "--node-ip-address=127.0.0.1",
             f"--num-cpus={self.worker_cpus}", f"--temp-dir={self.worker_tmp}",
             f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"])
        if out.returncode != 0:
            raise RuntimeError(f"worker node did not start:\n{out.stdout}\n{out.stderr}")

    # ------------------------------------------------------------------ queries
    def worker_node_id(self) -> str:
        return next(n["node_id"] for n in self.alive_nodes() if not n.get("is_head_node"))

    def log_files(self) -> list[Path]:
        """Every file under both nodes' Ray session folders (logs, runtime envs)."""
        out = []
        for tmp in (self.head_tmp, self.worker_tmp):
            for dirpath, _, filenames in os.walk(tmp):
                out += [Path(dirpath) / f for f in filenames]
        return [p for p in out if p.is_file() and not p.is_symlink()]

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        self.kill_marked()
        if self.uid is not None:
            kill_all(lambda pid: owned_by(pid, self.uid))
        if self.user_created and not pids(lambda pid: owned_by(pid, self.uid)):
            subprocess.run(["userdel", self.name], capture_output=True)
        shutil.rmtree(self.head_root, ignore_errors=True)
        shutil.rmtree(self.worker_root, ignore_errors=True)


def _q(s) -> str:
    return shlex.quote(str(s))

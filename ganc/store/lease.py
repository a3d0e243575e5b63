"""One writer per run: the lease object ``runs/<run_id>/lease.json`` (issue 28).

A command that writes a run holds its lease while it runs (:func:`hold`): a JSON record
naming the owner (user, host, pid, command) and when the lease expires, renewed by a
background thread every quarter of its time to live (:data:`TTL_ENV`, default
:data:`DEFAULT_TTL_S`). A second command on the run is refused in one line naming the
owner (:class:`LeaseHeld`); a lease past its expiry (its owner crashed), or on this host
whose process is gone, is taken over, saying so. At the end the record is marked released
(``released_at``), not removed, so the next command knows the run was left cleanly; a run
without a lease object (started before ganc took leases) is adopted in one line.

Every change is a compare-and-swap, so two commands can never both believe they hold it:

- **S3**: conditional writes, ``If-None-Match: *`` to create (the second creator gets
  412 Precondition Failed) and ``If-Match: <ETag>`` to renew, release and take over.
  AWS S3 and moto honour them; an S3-compatible server that ignores them is detected at
  the first lease (a second conditional create of the same key succeeds) and said in one
  line: there the lease is advisory (read, then write).
- **local folders**: each operation runs under ``flock`` on the run folder, so reading,
  deciding and writing the record (atomically, through a temporary file) is one step
  between processes of this machine (and of machines sharing a filesystem with working
  ``flock``, e.g. NFSv4).

Expiry is judged by the reader's clock against the ``expires_at`` the owner wrote, so
hosts must agree on the time to well within the time to live.
"""
from __future__ import annotations

import atexit
import contextlib
import getpass
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Optional

from ..errors import one_line
from .keys import StoreError

KEY = "lease.json"
TTL_ENV = "GANC_LEASE_S"
DEFAULT_TTL_S = 120.0
_HELD: dict = {}                 # run URL -> Lease held by this process
_CHECKED: set = set()            # S3 endpoints checked for conditional writes


class LeaseHeld(StoreError):
    """Another command holds the run's lease."""


def ttl_s() -> float:
    """The lease's time to live: ``$GANC_LEASE_S`` seconds, else :data:`DEFAULT_TTL_S`."""
    raw = os.environ.get(TTL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TTL_S
    except ValueError:
        raise StoreError(f"{TTL_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise StoreError(f"{TTL_ENV}={raw!r} must be more than 0 seconds")
    return value


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# ---------------------------------------------------------------- the record
def _owner() -> dict:
    try:
        user = getpass.getuser()
    except Exception:          # no user name in this environment (a bare container)
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(),
            "command": _command()}


def _command() -> str:
    """``ganc search``, ``compress.py``: the program and its subcommand, nothing more
    (arguments may hold what a lease, readable by all, must not)."""
    argv = sys.argv or [""]
    name = os.path.basename(argv[0])
    if name == "__main__.py":                  # python -m ganc
        name = os.path.basename(os.path.dirname(argv[0]))
    if len(argv) > 1 and argv[1][:1].isalpha():
        name += f" {argv[1]}"
    return name


def owner_of(rec: dict) -> str:
    """``user@host pid N (command)`` of a lease record."""
    cmd = f" ({rec['command']})" if rec.get("command") else ""
    return f"{rec.get('user', '?')}@{rec.get('host', '?')} pid {rec.get('pid', '?')}{cmd}"


def is_live(rec: Optional[dict], now: Optional[float] = None) -> bool:
    """Whether a lease record still holds the run: not released, not expired, and (on
    this host) its process still running."""
    if not isinstance(rec, dict) or rec.get("released_at"):
        return False
    try:
        expires = float(rec["expires_at"])
    except (KeyError, TypeError, ValueError):
        return False
    if expires <= (time.time() if now is None else now):
        return False
    if rec.get("host") == socket.gethostname() and isinstance(rec.get("pid"), int):
        return _pid_alive(rec["pid"]) or rec["pid"] == os.getpid()
    return True


def _parse(raw: Optional[bytes]) -> Optional[dict]:
    if raw is None:
        return None
    try:
        rec = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


# ---------------------------------------------------------------- compare-and-swap
class _Local:
    """The lease file of a local run folder, every operation under ``flock`` on it."""

    def __init__(self, run):
        self.folder = os.path.abspath(run.root)
        self.path = os.path.join(self.folder, KEY)
        self.created: list = []           # folders the lease made (removed with it)
        d = self.folder
        while not os.path.isdir(d) and os.path.dirname(d) != d:
            self.created.append(d)
            d = os.path.dirname(d)

    @contextlib.contextmanager
    def _locked(self):
        import fcntl  # deferred: POSIX only
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)          # closing the descriptor releases the lock

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None, None
        return raw, hashlib.sha256(raw).hexdigest()

    def read(self):
        return self._read()

    def _write(self, data: bytes) -> str:
        tmp = f"{self.path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)
        return hashlib.sha256(data).hexdigest()

    def swap(self, data: bytes, etag: Optional[str]) -> Optional[str]:
        """Write ``data`` if the lease is still ``etag`` (None: absent); its new etag, or
        None when it changed meanwhile."""
        with self._locked():
            if self._read()[1] != etag:
                return None
            return self._write(data)

    def remove(self, etag: str) -> None:
        with self._locked():
            if self._read()[1] == etag:
                os.remove(self.path)
        for d in self.created:                # only folders the lease made, when empty
            with contextlib.suppress(OSError):
                os.rmdir(d)


class _S3:
    """The lease object of an S3 run, changed only by conditional writes."""

    def __init__(self, run):
        self.run = run
        self.bucket, _, self.key = f"{run.root}/{KEY}".partition("/")

    def read(self):
        try:
            head = self.run.fs.call_s3("head_object", Bucket=self.bucket, Key=self.key)
            etag = head["ETag"]
            raw = self.run.fs.cat_file(f"{self.bucket}/{self.key}")
        except FileNotFoundError:
            return None, None
        return raw, etag

    def swap(self, data: bytes, etag: Optional[str]) -> Optional[str]:
        cond = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            out = self.run.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key,
                                      Body=data, **cond)
        except Exception as e:
            if _precondition_failed(e):
                return None
            raise
        return out["ETag"]

    def remove(self, etag: str) -> None:
        if self.read()[1] == etag:
            self.run.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key)

    def honours_conditions(self) -> bool:
        """Whether the server refuses a second conditional create of the (existing)
        lease: False on a server that ignores ``If-None-Match``."""
        raw, _ = self.read()
        return self.swap(raw, None) is None


def _precondition_failed(e: BaseException) -> bool:
    """Whether an S3 error is a conditional write refused (412): s3fs raises
    FileExistsError for ``If-None-Match``, an OSError caused by the ClientError
    ``PreconditionFailed`` for ``If-Match``."""
    if isinstance(e, FileExistsError):
        return True
    for err in (e, e.__cause__):
        response = getattr(err, "response", None) or {}
        code = str((response.get("Error") or {}).get("Code", ""))
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "412") or status == 412:
            return True
    return "pre-conditions you specified did not hold" in str(e)


def _backend(run):
    return _S3(run) if run.protocol == "s3" else _Local(run)


# ---------------------------------------------------------------- holding a lease
class Lease:
    """This process's lease of one run (see :func:`hold`)."""

    def __init__(self, run, backend, rec: dict, etag: str, ttl: float, new_run: bool):
        self.run, self.backend, self.rec, self.etag, self.ttl = run, backend, rec, etag, ttl
        self.refs, self.lost, self.new_run = 1, False, new_run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                        name=f"ganc-lease {run.url()}")
        self._thread.start()

    def _data(self, **more) -> bytes:
        self.rec = {**self.rec, **more}
        return json.dumps(self.rec, indent=1).encode()

    def renew(self) -> bool:
        """Push the expiry forward (compare-and-swap on the record this process wrote);
        False, said once, when the lease was lost to another command."""
        now = time.time()
        etag = self.backend.swap(self._data(renewed_at=_stamp(now), expires_at=now + self.ttl),
                                 self.etag)
        if etag is None:
            self.lost = True
            raw, _ = self.backend.read()
            _say(f"[lease] {self.run.url(KEY)}: lost to {owner_of(_parse(raw) or {})} "
                 "(this command was not heard from for longer than the lease lasts)")
            return False
        self.etag = etag
        return True

    def _renew_loop(self) -> None:
        failing = False
        while not self._stop.wait(self.ttl / 4):
            try:
                if not self.renew():
                    return
                failing = False
            except Exception as e:          # the store is unreachable: keep trying
                if not failing:
                    _say(f"[lease] cannot renew {self.run.url(KEY)}: {one_line(e)}")
                failing = True

    def close(self) -> None:
        self.release()

    def release(self) -> None:
        """Drop one hold; the last marks the record released (removes it when the run
        holds nothing else)."""
        self.refs -= 1
        if self.refs > 0:
            return
        _HELD.pop(self.run.url(), None)
        self._stop.set()
        self._thread.join(timeout=60)      # a renewal in flight ends first (its etag)
        if self.lost:
            return
        try:
            if self.new_run and self.run.ls() == [KEY]:
                self.backend.remove(self.etag)        # a run that never got further
            else:
                self.backend.swap(self._data(released_at=_stamp(time.time())), self.etag)
        except Exception as e:
            _say(f"[lease] cannot release {self.run.url(KEY)}: {one_line(e)}; it expires "
                 f"at {_stamp(float(self.rec['expires_at']))}")


def _release_all(timeout_s: float = 10.0) -> None:
    """At exit: release the local leases this process still holds (a command releases
    its lease itself; this is for callers of ``open_context`` that never closed it),
    waiting at most ``timeout_s``. S3 leases are left to expire: at exit s3fs can no
    longer make calls."""
    def release(lease):
        lease.refs = 1
        lease.release()
    threads = [threading.Thread(target=release, args=(lease,), daemon=True)
               for lease in list(_HELD.values()) if isinstance(lease.backend, _Local)]
    for t in threads:
        t.start()
    deadline = time.time() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.time()))


atexit.register(_release_all)


def hold(run, *, existed: bool = False) -> Lease:
    """Take the lease of ``run`` (a store rooted at ``runs/<id>``) for this process, or
    hold it once more if this process holds it already; :class:`LeaseHeld` names the
    owner when another command holds it. ``existed``: whether the run has content (a
    run without a lease object is then adopted in one line)."""
    held = _HELD.get(run.url())
    if held is not None and not held.lost:
        held.refs += 1
        return held
    backend, ttl = _backend(run), ttl_s()
    rec = {**_owner(), "token": uuid.uuid4().hex, "ttl_s": ttl,
           "acquired_at": _stamp(time.time())}
    for _ in range(5):
        raw, etag = backend.read()
        cur = _parse(raw)
        if is_live(cur):
            raise LeaseHeld(f"run {run.url()} is being written by {owner_of(cur)} since "
                            f"{cur.get('acquired_at', '?')} (lease {run.url(KEY)} until "
                            f"{_stamp(float(cur['expires_at']))}); wait for it to finish, "
                            "or for the lease to expire if that command died")
        new = backend.swap(json.dumps({**rec, "expires_at": time.time() + ttl},
                                      indent=1).encode(), etag)
        if new is not None:
            _said_taken(run, backend, cur, existed)
            lease = Lease(run, backend, {**rec, "expires_at": time.time() + ttl}, new, ttl,
                          new_run=cur is None and not existed)
            _HELD[run.url()] = lease
            return lease
    raise LeaseHeld(f"run {run.url()}: its lease {run.url(KEY)} kept changing while this "
                    "command tried to take it; another command is starting on it")


def _said_taken(run, backend, cur: Optional[dict], existed: bool) -> None:
    """The one line a taken lease may need: adopted (none before), taken over (expired
    or its process gone), or a server that ignores conditional writes."""
    if cur is None and existed:
        _say(f"[lease] {run.url()} had no lease (a run started before ganc took leases): "
             f"adopted, {run.url(KEY)} now names this command")
    elif cur == {}:
        _say(f"[lease] {run.url(KEY)} was not a lease ganc wrote: replaced")
    elif cur is not None and not cur.get("released_at"):
        _say(f"[lease] {run.url(KEY)}: the lease of {owner_of(cur)} ended without a release "
             "(that command died): taken over")
    if isinstance(backend, _S3) and cur is None:
        endpoint = run.endpoint_url or "s3"
        if endpoint not in _CHECKED:
            _CHECKED.add(endpoint)
            if not backend.honours_conditions():
                _say(f"[lease] {endpoint} ignores conditional writes (If-None-Match): the "
                     "lease is advisory there (two commands starting at the same moment "
                     "can both take it)")


__all__ = ["KEY", "TTL_ENV", "DEFAULT_TTL_S", "Lease", "LeaseHeld", "hold", "is_live",
           "owner_of", "ttl_s"]

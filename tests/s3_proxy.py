"""A TCP proxy on 127.0.0.1 in front of the test S3 server, which a test can take down
and bring back on the same port: the fault "the S3 server is unreachable".

moto keeps its buckets in the memory of the process that runs it, so stopping and
starting the server itself would lose them; the proxy is what clients connect to, and
``down()`` closes its listening socket (new connections are refused) and resets every
open connection (requests in flight fail), as a stopped server would; ``up()`` listens
again on the same port. Only this test process's threads are involved."""
from __future__ import annotations

import socket
import struct
import threading
import time


class PausableProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.host, self.target = host, (host, int(target_port))
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = None
        probe = socket.socket()
        probe.bind((host, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.downtimes: list[tuple[float, float]] = []
        self.up()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ control
    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for _ in range(100):          # the port may linger briefly after down()
                try:
                    s.bind((self.host, self.port))
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"proxy: cannot listen on {self.host}:{self.port} again")
            s.listen(64)
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            _close(listener)
        for c in conns:
            try:       # RST, not FIN: a client mid-request sees a reset connection
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            _close(c)

    def outage(self, seconds: float) -> None:
        """Down for ``seconds``, then up again (blocking)."""
        t0 = time.time()
        self.down()
        time.sleep(seconds)
        self.up()
        self.downtimes.append((t0, time.time()))

    def close(self) -> None:
        self.down()

    # ------------------------------------------------------------------ forwarding
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return                    # closed by down()
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:      # went down meanwhile
                    _close(client)
                    _close(server)
                    return
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self._lock:
                self._conns = [c for c in self._conns if c is not src and c is not dst]


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass

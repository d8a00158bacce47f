"""A TCP proxy in front of MySQL/MariaDB that injects real network faults.

- `outage(seconds)`: every open connection is cut and new ones are closed right after they are
  accepted, for `seconds`: what a database restart or a network cut looks like to a client.
- `blackhole(seconds)`: a silent partition: for `seconds`, nothing is forwarded either way and
  nothing is closed (packets dropped, not refused): a client waits for an answer that never comes.
- `cut_after_commit(every)`: every `every`-th COMMIT reaches the server, which commits, but its
  answer is dropped and the connection cut: the client does not know whether it committed (a
  lost acknowledgement).

It reads the client's side of the MySQL protocol (3-byte length, sequence, command) to find the
COMMITs; TLS connections cannot be read, so it is used without TLS.
"""

from __future__ import annotations

import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.down_until = 0.0
        self.commit_every = 0
        self.commits = 0
        self.cuts = 0          # acknowledgements dropped
        self.outage_cuts = 0   # connections cut or refused by an outage
        self.silent_until = 0.0
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    # -------------------------------------------------------------- faults

    def outage(self, seconds: float) -> None:
        with self.lock:
            self.down_until = time.monotonic() + seconds
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            self._close(*pair)
            self.outage_cuts += 1

    def blackhole(self, seconds: float) -> None:
        with self.lock:
            self.silent_until = time.monotonic() + seconds

    def _silent(self) -> bool:
        return time.monotonic() < self.silent_until

    def cut_after_commit(self, every: int) -> None:
        with self.lock:
            self.commit_every = every

    def close(self) -> None:
        self.running = False
        self.listener.close()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            self._close(*pair)

    # -------------------------------------------------------------- plumbing

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self.down_until:
                self.outage_cuts += 1
                client.close()
                continue
            if self._silent():  # accepted (the SYN got through) and then never answered
                with self.lock:
                    self.pairs.append((client, client))
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            state = {"cut_on_reply": False}
            threading.Thread(target=self._client_to_server, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(client, server, state), daemon=True).start()

    @staticmethod
    def _close(client: socket.socket, server: socket.socket) -> None:
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _client_to_server(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        buffer = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buffer += data
                out = b""
                while len(buffer) >= 4:
                    length = int.from_bytes(buffer[:3], "little")
                    if len(buffer) < 4 + length:
                        break
                    packet, buffer = buffer[:4 + length], buffer[4 + length:]
                    payload = packet[4:]
                    if payload[:1] == b"\x03" and payload[1:].strip().upper() == b"COMMIT":
                        with self.lock:
                            self.commits += 1
                            if self.commit_every and self.commits % self.commit_every == 0:
                                state["cut_on_reply"] = True
                    out += packet
                if out and not self._silent():
                    server.sendall(out)
        except OSError:
            pass
        self._close(client, server)

    def _server_to_client(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if state["cut_on_reply"]:
                    self.cuts += 1  # the server committed; the client never hears it
                    break
                if not self._silent():
                    client.sendall(data)
        except OSError:
            pass
        self._close(client, server)

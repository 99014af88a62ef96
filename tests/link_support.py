"""A TCP proxy that corrupts and loses bytes, between a client and a board server.

Its ``flip`` and ``drop`` probabilities may be changed while it runs: a link that
degrades and heals.
"""

from __future__ import annotations

import socket
import threading

import numpy as np


class CorruptingProxy:
    """Forwards TCP between a client and ``target``; per forwarded chunk (what one
    ``recv`` returns) flips one byte with probability ``flip``, drops the chunk with
    probability ``drop``.

    Attributes
    ----------
    flipped, dropped, chunks : int
        What it did so far, both directions together.
    """

    def __init__(self, target: str, seed: int, flip: float, drop: float) -> None:
        host, port = target.removeprefix("socket://").split(":")
        self.target = (host, int(port))
        self.flip, self.drop = flip, drop
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.flipped = self.dropped = self.chunks = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            board = socket.create_connection(self.target)
            self.sockets += [client, board]
            for a, b in ((client, board), (board, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    return
                with self.lock:
                    self.chunks += 1
                    if self.rng.random() < self.drop:
                        self.dropped += 1
                        continue
                    if self.rng.random() < self.flip:
                        self.flipped += 1
                        buf = bytearray(data)
                        buf[self.rng.integers(len(buf))] ^= int(self.rng.integers(1, 256))
                        data = bytes(buf)
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()

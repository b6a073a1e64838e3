"""A tracking server that does not answer, for tests: a socket on 127.0.0.1 (never any other
address) that takes connections and never replies."""

from __future__ import annotations

import socket
from functools import cache


@cache
def silent_address() -> str:
    """``http://127.0.0.1:<port>`` of a listening socket, one per test process. The kernel
    completes each connection (the backlog); nobody reads the request or replies to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    _KEEP.append(server)  # open until the process ends
    return f"http://127.0.0.1:{server.getsockname()[1]}"


_KEEP: list[socket.socket] = []

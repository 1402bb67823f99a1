"""A TLS 1.3 client driving the system's libssl through ctypes, for what neither Python's
``ssl`` nor pyOpenSSL lets a client do: ask for a key update (``SSL_key_update``, RFC 8446
4.6.3) whenever it likes, thousands of times.

It takes the socket over in blocking mode, each wait bounded by the kernel's timeouts
(``SO_RCVTIMEO``, ``SO_SNDTIMEO``): ``SSL_write`` sends each record as it is made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from pathlib import Path

_TLS1_3_VERSION = 0x0304
_SSL_CTRL_SET_MIN_PROTO_VERSION = 123
_SSL_FILETYPE_PEM = 1
_SSL_VERIFY_NONE = 0
#: SSL_key_update's type: we update our keys and ask the peer to update its own (and so to
#: answer with a KeyUpdate of its own).
SSL_KEY_UPDATE_REQUESTED = 1


def _libssl() -> ctypes.CDLL:
    name = ctypes.util.find_library("ssl")
    assert name is not None, "the system's libssl is needed"
    lib = ctypes.CDLL(name)
    pointer = ctypes.c_void_p
    signatures: dict[str, tuple[list[type], type | None]] = {
        "TLS_client_method": ([], pointer),
        "SSL_CTX_new": ([pointer], pointer),
        "SSL_CTX_free": ([pointer], None),
        "SSL_CTX_ctrl": ([pointer, ctypes.c_int, ctypes.c_long, pointer], ctypes.c_long),
        "SSL_CTX_use_certificate_chain_file": ([pointer, ctypes.c_char_p], ctypes.c_int),
        "SSL_CTX_use_PrivateKey_file": ([pointer, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
        "SSL_CTX_set_verify": ([pointer, ctypes.c_int, pointer], None),
        "SSL_new": ([pointer], pointer),
        "SSL_free": ([pointer], None),
        "SSL_set_fd": ([pointer, ctypes.c_int], ctypes.c_int),
        "SSL_connect": ([pointer], ctypes.c_int),
        "SSL_write": ([pointer, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
        "SSL_read": ([pointer, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
        "SSL_key_update": ([pointer, ctypes.c_int], ctypes.c_int),
        "SSL_do_handshake": ([pointer], ctypes.c_int),
    }
    for function, (arguments, result) in signatures.items():
        getattr(lib, function).argtypes = arguments
        getattr(lib, function).restype = result
    return lib


class RawTLS13Client:
    """Mutual TLS 1.3 to a node over ``sock`` (verifying nothing: the test trusts its node)."""

    def __init__(self, sock: socket.socket, cert: Path, key: Path, timeout: int = 20) -> None:
        self.lib = lib = _libssl()
        self.sock = sock
        sock.setblocking(True)  # Python's timeouts make the descriptor non-blocking
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", timeout, 0))
        self._ctx = lib.SSL_CTX_new(lib.TLS_client_method())
        lib.SSL_CTX_ctrl(self._ctx, _SSL_CTRL_SET_MIN_PROTO_VERSION, _TLS1_3_VERSION, None)
        assert lib.SSL_CTX_use_certificate_chain_file(self._ctx, str(cert).encode()) == 1
        assert lib.SSL_CTX_use_PrivateKey_file(self._ctx, str(key).encode(), _SSL_FILETYPE_PEM)
        lib.SSL_CTX_set_verify(self._ctx, _SSL_VERIFY_NONE, None)
        self._ssl = lib.SSL_new(self._ctx)
        lib.SSL_set_fd(self._ssl, sock.fileno())
        assert lib.SSL_connect(self._ssl) == 1, "the TLS 1.3 handshake failed"

    def write(self, data: bytes) -> bool:
        """One record of ``data``; False once the node has closed the connection."""
        written: int = self.lib.SSL_write(self._ssl, data, len(data))
        return written == len(data)

    def read(self, size: int = 65536) -> bytes:
        """What the node sent (b"" once it closed)."""
        buffer = ctypes.create_string_buffer(size)
        count = self.lib.SSL_read(self._ssl, buffer, size)
        return buffer.raw[: max(count, 0)]

    def ask_key_update(self) -> bool:
        """Send a KeyUpdate asking the node for one back; False once the node has closed."""
        assert self.lib.SSL_key_update(self._ssl, SSL_KEY_UPDATE_REQUESTED) == 1
        sent: int = self.lib.SSL_do_handshake(self._ssl)
        return sent == 1

    def close(self) -> None:
        self.lib.SSL_free(self._ssl)
        self.lib.SSL_CTX_free(self._ctx)
        self.sock.close()

"""The TLS engine: pyOpenSSL over memory BIOs, bytes in and bytes out, no sockets.

The asyncio transport feeds received ciphertext to :meth:`TLSEngine.receive_data`,
drives :meth:`do_handshake`, and sends whatever :meth:`data_to_send` returns;
tests may wire two engines together directly. Because the engine never
touches a socket, a peer that says nothing costs nothing but a timer.

The engine is also where OpenSSL's per-certificate verify callback lands
(through the context, see :mod:`dicomtls.tls.context`): it turns each call
into a :class:`CertificateInfo` and a :class:`VerifyError`, adds the optional
hostname check, asks the user's ``on_verify`` and records what was decided,
so that a failed handshake can name the certificate and code that failed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL, crypto

from dicomtls.buffers import BufferPool
from dicomtls.logs import get_logger
from dicomtls.text import printable
from dicomtls.tls.certinfo import CertificateInfo, subject_alt_names
from dicomtls.tls.client_hello import HELLO_MAX, ClientHello, offer_hint, read_client_hello
from dicomtls.tls.errors import (
    HandshakeStage,
    TLSError,
    TLSHandshakeError,
    alert_from_reason,
    alert_meaning,
)
from dicomtls.tls.expiry import expired_alert_hint
from dicomtls.tls.flags import Side
from dicomtls.tls.hostnames import dns_name_matches
from dicomtls.tls.issuers import (
    REFUSALS_OF_OUR_ISSUER,
    accepted_issuers,
    issuer_hint,
    our_issuer,
)
from dicomtls.tls.names import certificate_der_names
from dicomtls.tls.session import SessionInfo, session_info
from dicomtls.tls.sniff import SNIFF_MAX, describe_non_tls, undecided
from dicomtls.tls.verify_error import VerifyCode, VerifyError

if TYPE_CHECKING:
    from dicomtls.tls.settings import TLSSettings

__all__ = ["TLSClosed", "TLSEngine", "VerifyCall"]

log = get_logger("dicomtls.tls")

_READ_CHUNK = 1 << 18  # 256 KiB: drain the BIO in few calls, not 4 KB at a time
_RECORD = 16 << 10  # the most plaintext one TLS record holds: what one SSL_read returns
_INT_MAX = (1 << 31) - 1  # SSL_read's length is an int
#: OpenSSL's reasons for a server finding no version or suite in common with a client.
_NOTHING_IN_COMMON = ("no shared cipher", "unsupported protocol", "version too low")
_NAME_MISMATCH = (VerifyCode.HOSTNAME_MISMATCH, VerifyCode.IP_ADDRESS_MISMATCH)
# pyOpenSSL's own OpenSSL binding is cryptography's (public: cryptography.hazmat.bindings).
_lib, _ffi = Binding.lib, Binding.ffi
_FAST_READ = all(
    hasattr(_lib, name) for name in ("SSL_read", "SSL_get_error", "SSL_ERROR_WANT_READ")
)
_FAST_WRITE = all(hasattr(_lib, name) for name in ("BIO_read", "BIO_get_mem_data"))
#: Ciphertext leaves the memory BIO into these, in one copy (pyOpenSSL's bio_read makes two
#: and a fresh 256 KiB allocation each time); used again once the transport has sent or
#: copied what it was given, as it may queue a view of it until then.
_CIPHERTEXT = BufferPool(smallest=_READ_CHUNK, largest=_READ_CHUNK, budget=4 * _READ_CHUNK)
#: Less ciphertext than this is read as bytes of its own: a queued handshake message or
#: alert must not pin 256 KiB, and a small read is cheapest so.
_SMALL_CIPHERTEXT = 16 << 10


class TLSClosed(TLSError):
    """The peer ended the TLS session (close_notify or a bare TCP close)."""


@dataclass
class VerifyCall:
    """One call of the verify callback: what OpenSSL said, and what was decided."""

    ok: bool
    error: VerifyError
    """The verdict OpenSSL records: its own error, or UNSPECIFIED ``by_callback`` when only
    the callback refused a certificate OpenSSL found valid."""
    depth: int
    accepted: bool
    openssl_certificate: crypto.X509 = field(repr=False)
    """The certificate as OpenSSL handed it over; converted only when someone looks."""

    @cached_property
    def raw(self) -> x509.Certificate:
        return self.openssl_certificate.to_cryptography()

    @cached_property
    def certificate(self) -> CertificateInfo:
        return CertificateInfo.from_certificate(self.raw, self.depth)

    @cached_property
    def unreadable(self) -> str | None:
        """Why cryptography cannot load this certificate OpenSSL read (version 4, say);
        None when it can. Such a certificate cannot be described, so it is refused."""
        try:
            _ = self.raw
        except (ValueError, x509.InvalidVersion) as exc:
            return printable(str(exc))
        return None

    @property
    def described(self) -> CertificateInfo | None:
        """:attr:`certificate`, or None for an unreadable one."""
        return None if self.unreadable is not None else self.certificate

    @property
    def subject(self) -> str:
        """The subject as a person reads it, even when the rest cannot be read."""
        if self.unreadable is None:
            return self.certificate.readable_subject
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, self.openssl_certificate)
        return certificate_der_names(der)[0].readable


def _verdict(call: VerifyCall) -> str:
    """Who refused the certificate of ``call``, and, when nobody can describe it, which."""
    if call.unreadable is not None:
        return (
            f"certificate '{call.subject}' at depth {call.depth} cannot be read: "
            f"{call.unreadable}; {call.error.name} ({call.error.message})"
        )
    return "OpenSSL's checks" if not call.ok else "our verify callback"


def _hostname_error(cert: x509.Certificate, hostname: str) -> VerifyError | None:
    """RFC 6125 matching against the subjectAltName only (no Common Name fallback)."""
    san = subject_alt_names(cert)  # an unreadable one names no host
    address = _ip_address(hostname)
    if address is not None:
        matched = address in san.get_values_for_type(x509.IPAddress)
        code = VerifyCode.IP_ADDRESS_MISMATCH
    else:
        names = san.get_values_for_type(x509.DNSName)
        matched = any(dns_name_matches(name, hostname) for name in names)
        code = VerifyCode.HOSTNAME_MISMATCH
    return None if matched else VerifyError(code, 0)


class TLSEngine:
    """One TLS connection, sans-I/O."""

    def __init__(
        self,
        settings: TLSSettings,
        side: Side,
        peer: str,
        *,
        server_hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self.side = side
        self.peer = peer
        self.server_hostname = settings.server_hostname or server_hostname
        self.verify_calls: list[VerifyCall] = []
        self.handshake_complete = False
        self._callback_exception: BaseException | None = None
        self._first_bytes_seen = False
        self._head = b""
        # A server keeps the client's first bytes until the handshake is done: its ClientHello,
        # to say what it offered if nothing was in common.
        self._hello: bytearray | None = bytearray() if side is Side.SERVER else None
        self._received_application_data = False
        self._conn = SSL.Connection(settings.context(side), None)
        # The SSL* under pyOpenSSL's connection, to decrypt into the caller's buffer with the
        # same OpenSSL binding pyOpenSSL uses (None: an unforeseen pyOpenSSL, the slow path).
        self._ssl = getattr(self._conn, "_ssl", None) if _FAST_READ else None
        # The memory BIO OpenSSL writes ciphertext to, read with the same binding.
        self._outgoing = getattr(self._conn, "_from_ssl", None) if _FAST_WRITE else None
        # Weakly: the connection holding its engine would make a cycle that keeps OpenSSL's
        # buffers until the garbage collector runs, long after the connection is gone.
        self._conn.set_app_data(weakref.proxy(self))
        if side is Side.CLIENT:
            self._conn.set_connect_state()
            if self.server_hostname and _ip_address(self.server_hostname) is None:
                self._conn.set_tlsext_host_name(self.server_hostname.encode("idna"))
        else:
            self._conn.set_accept_state()

    # -- ciphertext side ----------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview) -> None:
        """Feed ciphertext received from the network."""
        if not self._first_bytes_seen and data:
            self._sniff(bytes(data[:SNIFF_MAX]))
        if self._hello is not None and len(self._hello) < HELLO_MAX:
            self._hello += data[: HELLO_MAX - len(self._hello)]
        self._conn.bio_write(data)

    def _sniff(self, data: bytes) -> None:
        """Judge the peer's first bytes once enough have arrived (a slow peer sends one at a time)."""
        self._head += data[: SNIFF_MAX - len(self._head)]
        if undecided(self._head):
            return
        self._first_bytes_seen = True
        what = describe_non_tls(self._head, self.side)
        if what is not None and not self.handshake_complete:
            raise self._error(HandshakeStage.NOT_TLS, what.reason, hint=what.hint)

    def receive_eof(self) -> None:
        """The peer closed its end of the TCP connection."""
        self._conn.bio_shutdown()

    def data_to_send(self) -> list[bytes | memoryview]:
        """Ciphertext waiting to go out to the peer, in order (empty when none).

        Chunks, not one joined ``bytes``: joining megabytes of ciphertext costs a copy
        into fresh pages, and the socket takes the chunks one by one anyway. Large chunks
        are views of pooled buffers, reused only once nobody holds the view.
        """
        chunks: list[bytes | memoryview] = []
        bio = self._outgoing
        if bio is None:
            with contextlib.suppress(SSL.WantReadError):
                while True:
                    chunks.append(self._conn.bio_read(_READ_CHUNK))
            return chunks
        while (waiting := _lib.BIO_get_mem_data(bio, _ffi.NULL)) > 0:
            small = waiting < _SMALL_CIPHERTEXT
            chunk = self._conn.bio_read(waiting) if small else self._pooled_ciphertext(bio)
            if not chunk:
                break  # a memory BIO holding data gives some; never loop on one that does not
            chunks.append(chunk)
        return chunks

    @staticmethod
    def _pooled_ciphertext(bio: Any) -> memoryview:
        """Up to 256 KiB of the ciphertext waiting in the memory BIO, in a pooled buffer."""
        buffer = _CIPHERTEXT.take(_READ_CHUNK)
        count = _lib.BIO_read(bio, _ffi.from_buffer(buffer, require_writable=True), _READ_CHUNK)
        chunk = memoryview(buffer)[: max(count, 0)]
        # Given back while the chunk views it: handed out again only once it is gone.
        _CIPHERTEXT.give_back(buffer)
        return chunk

    # -- handshake ------------------------------------------------------------------------

    def do_handshake(self) -> bool:
        """Advance the handshake; True once it is complete. Raises TLSHandshakeError."""
        if self.handshake_complete:
            return True
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except (SSL.ZeroReturnError, SSL.SysCallError):
            raise self.closed_error() from None
        except SSL.Error as exc:
            raise self._classify(exc) from (self._callback_exception or exc)
        self._refuse_what_openssl_let_through()
        self.handshake_complete = True
        self._hello = None
        self._log_unverified_peer()
        return True

    def _refuse_what_openssl_let_through(self) -> None:
        """A handshake OpenSSL finished that we still end: client NONE mode does not stop at a
        False verdict, but a crashing callback must never be mistaken for consent; nor is a
        certificate nobody can describe accepted, in any mode."""
        if self._callback_exception is not None:
            raise self._callback_error() from self._callback_exception
        unreadable = next((c for c in self.verify_calls if c.unreadable is not None), None)
        if unreadable is not None:
            raise self._rejected_chain(unreadable, None)

    def _log_unverified_peer(self) -> None:
        failed = self.first_rejected_call
        if failed is not None and not self.settings.verify.failure_ends_connection():
            log.warning(
                "TLS %s link to %s continues although its certificate '%s' failed: %s",
                self.side,
                self.peer,
                failed.subject,
                failed.error,
            )

    # -- plaintext side -------------------------------------------------------------------

    def send(self, data: bytes | memoryview) -> None:
        """Encrypt application data; the ciphertext then waits in :meth:`data_to_send`."""
        try:
            self._conn.sendall(data)
        except SSL.Error as exc:
            raise TLSError(f"TLS write to {self.peer} failed: {_reason(exc)}") from exc

    def read(self) -> bytes:
        """Decrypted application data available now (empty when none). Raises TLSClosed."""
        out = bytearray()
        chunk = memoryview(bytearray(_READ_CHUNK))
        while True:
            try:
                count = self.read_into(chunk)
            except TLSError:
                if out:
                    break  # hand over what came before; the next read reports the end
                raise
            if not count:
                break
            out += chunk[:count]
        return bytes(out)

    def read_into(self, buffer: memoryview) -> int:
        """Decrypt what has arrived into ``buffer``, as much as fits; 0 when nothing has.

        The receiving layer passes the place the bytes are going anyway (the body of the
        PDU being received), so they are not copied again: OpenSSL decrypts each record
        straight into it (pyOpenSSL's own recv_into would allocate a buffer per record and
        copy out of it). Raises TLSClosed once the peer has closed and everything before
        the close was delivered.
        """
        filled = 0
        size = len(buffer)
        ssl = self._ssl
        target: Any = _ffi.from_buffer(buffer, require_writable=True) if ssl is not None else None
        while filled < size:
            try:
                if ssl is None:
                    got = self._conn.recv_into(buffer[filled:], min(size - filled, _RECORD))
                else:
                    got = _lib.SSL_read(ssl, target + filled, min(size - filled, _INT_MAX))
                    if got <= 0:
                        if _lib.SSL_get_error(ssl, got) == _lib.SSL_ERROR_WANT_READ:
                            break
                        self._conn._raise_ssl_error(ssl, got)  # pyOpenSSL's exception for it
                filled += got
            except SSL.WantReadError:
                break
            except SSL.Error as exc:
                if filled:
                    break  # hand over what came before; the next read reports the end
                self._read_failed(exc)
        if filled:
            self._received_application_data = True
        return filled

    def _read_failed(self, exc: SSL.Error) -> NoReturn:
        """Raise what a read that delivered nothing ended on: the peer's close, its late
        refusal of our certificate, or a broken record."""
        if isinstance(exc, SSL.ZeroReturnError | SSL.SysCallError):
            if self._rejected_after_handshake():
                raise self._closed_after_handshake_error() from None
            raise TLSClosed(f"TLS session with {self.peer} closed") from None
        if not self._received_application_data and _alert(exc):
            # TLS 1.3: the server judges our certificate after our handshake finished.
            raise self._classify(exc) from exc
        raise TLSError(f"TLS read from {self.peer} failed: {_reason(exc)}") from exc

    def close(self) -> None:
        """Send close_notify (the ciphertext then waits in :meth:`data_to_send`)."""
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()

    # -- verification (called by OpenSSL through the context's trampoline) ------------------

    def on_openssl_verify(
        self, certificate: crypto.X509, errnum: int, depth: int, ok: bool
    ) -> bool:
        """OpenSSL's verdict on one certificate: add the hostname check, ask ``on_verify``,
        record the call; the return value is what OpenSSL goes on with."""
        call = VerifyCall(
            ok=ok,
            error=VerifyError(errnum, depth),
            depth=depth,
            accepted=ok,
            openssl_certificate=certificate,
        )
        if call.unreadable is not None:
            return self._refuse_unreadable(call)
        self._check_hostname(call)
        if call.ok and self._ruled_on(depth):
            return True
        call.accepted = self._ask_callback(call)
        if call.ok and not call.accepted:
            # OpenSSL found nothing wrong, and the callback said no (or raised): OpenSSL then
            # records X509_V_ERR_UNSPECIFIED (X509_verify_cert's safety net), and so do we.
            call.error = VerifyError.callback_rejection(depth)
        self.verify_calls.append(call)
        return call.accepted

    def _refuse_unreadable(self, call: VerifyCall) -> bool:
        """A certificate we cannot read can be neither matched against an access rule nor
        shown to ``on_verify``: refused in every verify mode, OpenSSL's own error kept."""
        call.accepted = False
        if call.ok:
            call.ok = False
            call.error = VerifyError(VerifyCode.CERT_REJECTED, call.depth)
        self.verify_calls.append(call)
        return False

    def _ruled_on(self, depth: int) -> bool:
        """OpenSSL reports each error of a certificate, then confirms it once more; the
        callback has already ruled on that certificate, so it is not asked twice."""
        return any(c.depth == depth and not c.ok for c in self.verify_calls)

    def _check_hostname(self, call: VerifyCall) -> None:
        """Turn the leaf's call into a failure when it does not name the host we dialled
        (if we check host names, and OpenSSL found the leaf good otherwise)."""
        if not (call.ok and call.depth == 0 and self._wants_hostname_check()):
            return
        assert self.server_hostname is not None
        mismatch = _hostname_error(call.raw, self.server_hostname)
        if mismatch is not None:
            call.ok = call.accepted = False
            call.error = VerifyError(mismatch.code, call.depth)

    def _ask_callback(self, call: VerifyCall) -> bool:
        """The user's verdict on ``call`` (without a callback, the verdict so far).

        A callback that raised refuses this certificate and every later one.
        """
        if self._callback_exception is not None:
            return False
        callback = self.settings.on_verify
        if callback is None:
            return call.accepted
        try:
            return bool(callback(call.ok, call.certificate, call.error))
        except Exception as exc:
            self._callback_exception = exc
            log.error("TLS verify callback raised %r for %s", exc, self.peer)
            return False

    def _wants_hostname_check(self) -> bool:
        return (
            self.side is Side.CLIENT and self.settings.check_hostname and bool(self.server_hostname)
        )

    @property
    def first_rejected_call(self) -> VerifyCall | None:
        """The first certificate that failed OpenSSL's checks or was refused by the callback."""
        for call in self.verify_calls:
            if not call.accepted or not call.ok:
                return call
        return None

    # -- results ----------------------------------------------------------------------------

    def session(self) -> SessionInfo:
        """What was negotiated; only meaningful once the handshake is complete."""
        return session_info(self._conn, self)

    # -- error classification ---------------------------------------------------------------

    def _error(
        self, stage: HandshakeStage, reason: str, *, hint: str | None = None, **extra: object
    ) -> TLSHandshakeError:
        return TLSHandshakeError(
            peer=self.peer,
            side=self.side,
            stage=stage,
            reason=reason,
            hint=hint,
            **extra,  # type: ignore[arg-type]
        )

    def _callback_error(self) -> TLSHandshakeError:
        exc = self._callback_exception
        failing = next((c for c in self.verify_calls if not c.accepted), None)
        error = self._error(
            HandshakeStage.CALLBACK,
            f"our verify callback raised {exc!r}",
            certificate=None if failing is None else failing.described,
            verify_error=None if failing is None else failing.error,
            hint="fix the exception in on_verify; a crashing callback always rejects the peer",
        )
        error.__cause__ = exc
        return error

    def closed_error(self) -> TLSHandshakeError:
        return self._error(
            HandshakeStage.CLOSED,
            "the peer closed the connection during the TLS handshake",
            hint=(
                "the peer may not speak TLS on this port, or it dropped us without an alert "
                "(check its log for the reason: our certificate, TLS version or cipher suites)"
            ),
        )

    def close_error(self) -> TLSHandshakeError | None:
        """When the transport drops (EOF or reset), the handshake error that explains it, if any."""
        if not self.handshake_complete:
            return self.closed_error()
        if self._rejected_after_handshake():
            return self._closed_after_handshake_error()
        return None

    def _rejected_after_handshake(self) -> bool:
        """A TLS 1.3 server that hangs up before saying anything has almost surely refused us.

        In TLS 1.3 the client finishes first and the server judges its certificate after;
        many servers (DCMTK, asyncio) then close without sending the alert.
        """
        return (
            self.side is Side.CLIENT
            and not self._received_application_data
            and self._conn.get_protocol_version_name() == "TLSv1.3"
        )

    def _closed_after_handshake_error(self) -> TLSHandshakeError:
        has_certificate = self.settings.identity is not None
        return self._error(
            HandshakeStage.CLOSED,
            "the peer closed the connection right after the TLS 1.3 handshake, before any data",
            hint=(
                "the server judged our certificate after our side finished and refused it: "
                + (
                    "check that it trusts our CA and accepts our certificate's purposes"
                    if has_certificate
                    else "it probably requires a client certificate, and we sent none"
                )
            ),
            **self._issuers_if_refused(None),
        )

    def _peer_alert_hint(self, alert: str) -> str:
        """What to do about the peer's alert; for ``certificate_expired`` while ours is valid,
        the peer's clock or CRL is at fault."""
        if alert == "certificate_expired":
            ours = self._conn.get_certificate(as_cryptography=True)
            hint = expired_alert_hint(ours)
            if hint is not None:
                return hint
        return _alert_hint(alert)

    def _issuers_if_refused(self, alert: str | None) -> dict[str, object]:
        """When a server refused our certificate for its issuer or for want of one (``alert``,
        or a silent close): the CAs it said it takes, and ours."""
        if self.side is Side.SERVER or (alert is not None and alert not in REFUSALS_OF_OUR_ISSUER):
            return {}
        accepted = accepted_issuers(self._conn)
        if not accepted:
            return {}
        return {"accepted_issuers": accepted, "our_issuer": our_issuer(self._conn)}

    def timeout_error(self) -> TLSHandshakeError:
        """The error for a handshake that did not finish in time (raised by the transport)."""
        return self._error(
            HandshakeStage.TIMEOUT,
            f"no complete TLS handshake within {self.settings.handshake_timeout:g} s",
            hint="the peer may be plain TCP waiting for us to speak first, or too slow/blocked",
        )

    def _rejected_chain(self, failed: VerifyCall, reason: str | None) -> TLSHandshakeError:
        return self._error(
            HandshakeStage.VERIFY,
            f"we rejected the peer's certificate chain ({_verdict(failed)})"
            + self._names_dialled(failed),
            certificate=failed.described,
            verify_error=failed.error,
            openssl_error=reason,
            hint=issuer_hint(failed.described, failed.error, self.settings.trust.ca_certificates),
        )

    def _names_dialled(self, failed: VerifyCall) -> str:
        """For a name mismatch: the name we dialled beside the names the certificate holds,
        which is the whole diagnosis (the names are the peer's to write: escaped, 8 at most)."""
        info = failed.described
        if failed.error.code not in _NAME_MISMATCH or info is None:
            return ""
        held = [printable(name) for name in (*info.dns_names, *info.ip_addresses)]
        listed = ", ".join(held[:8]) + (f" and {len(held) - 8} more" if len(held) > 8 else "")
        return (
            f"; we connected to '{printable(self.server_hostname or '')}', the certificate names "
            + (listed or "no DNS name or IP address")
        )

    def _classify(self, exc: SSL.Error) -> TLSHandshakeError:
        reason = _reason(exc)
        if self._callback_exception is not None:
            return self._callback_error()
        failed = next((c for c in self.verify_calls if not c.accepted), None)
        if failed is not None and not self.handshake_complete:
            return self._rejected_chain(failed, reason)
        lowered = reason.lower()
        alert = _alert(exc)
        if alert is not None:
            return self._error(
                HandshakeStage.PEER_REJECTED,
                f"the peer sent TLS alert {alert}: {alert_meaning(alert)}",
                alert=alert,
                openssl_error=reason,
                hint=self._peer_alert_hint(alert),
                **self._issuers_if_refused(alert),
            )
        if "peer did not return a certificate" in lowered or "certificate required" in lowered:
            return self._error(
                HandshakeStage.NO_PEER_CERTIFICATE,
                "the peer sent no certificate and we require one (FAIL_IF_NO_PEER_CERT)",
                openssl_error=reason,
                hint="configure the client with a certificate and key issued by a CA we trust",
            )
        return self._handshake_error(reason, lowered)

    def _handshake_error(self, reason: str, lowered: str) -> TLSHandshakeError:
        """A handshake that broke off on our side: for a client we share nothing with, what
        it offered and which profile would take it."""
        hint = _protocol_hint(lowered)
        offer = self._nothing_in_common(lowered)
        if offer is None:
            return self._error(HandshakeStage.HANDSHAKE, reason, openssl_error=reason, hint=hint)
        advice = offer_hint(offer, self._our_key_type())
        return self._error(
            HandshakeStage.HANDSHAKE,
            f"{reason}; {offer.describe()}",
            openssl_error=reason,
            # a version refused says so first: the suites alone would not explain it
            hint=f"{hint}; {advice}" if hint and "version" in hint else advice,
        )

    def _our_key_type(self) -> str | None:
        identity = self.settings.identity
        return None if identity is None else identity.key_facts[0]

    def _nothing_in_common(self, reason: str) -> ClientHello | None:
        """The client's offer, when we are the server and found no version or suite in it."""
        if self._hello is None or not any(words in reason for words in _NOTHING_IN_COMMON):
            return None
        return read_client_hello(bytes(self._hello))


def _ip_address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``name`` as an IP address (brackets allowed), or None when it is a host name."""
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _reason(exc: SSL.Error) -> str:
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [e[2] for e in errors if isinstance(e, tuple) and len(e) >= 3 and e[2]]
    return "; ".join(reasons) if reasons else (str(exc) or type(exc).__name__)


def _alert(exc: SSL.Error) -> str | None:
    return alert_from_reason(_reason(exc))


_ALERT_HINTS = {
    "unknown_ca": "add the CA that issued our certificate to the peer's trusted CA list",
    "certificate_required": "configure a client certificate and key (the peer requires one)",
    "certificate_expired": "renew our certificate (and check both machines' clocks)",
    "certificate_revoked": "our certificate is on the peer's CRL: issue a new one",
    "unsupported_certificate": (
        "reissue our certificate with extendedKeyUsage serverAuth and clientAuth"
    ),
    "bad_certificate": "check our certificate's purposes, key size and signature in the peer's log",
    "protocol_version": "both sides must allow a common TLS version (1.2 or 1.3 for BCP 195)",
    "handshake_failure": "no common cipher suite or signature algorithm: compare both profiles",
    "insufficient_security": "offer the stronger suites the peer's profile requires",
    "internal_error": (
        "read the peer's log: if its own verify rule refused our certificate, it says why there"
    ),
}


def _alert_hint(alert: str) -> str:
    return _ALERT_HINTS.get(alert, "read the peer's log for why it refused the handshake")


def _protocol_hint(reason: str) -> str | None:
    if "no shared cipher" in reason or "no cipher" in reason:
        return "no cipher suite is allowed by both sides: compare the TLS profiles/cipher lists"
    if any(w in reason for w in ("unsupported protocol", "version too low", "protocol version")):
        return "no TLS version is allowed by both sides; BCP 195 needs TLS 1.2 or 1.3"
    if "wrong version number" in reason or "packet length too long" in reason:
        return "the peer does not speak TLS on this port (plain DICOM?)"
    return None

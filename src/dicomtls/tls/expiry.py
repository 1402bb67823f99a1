"""What in a node's TLS files runs out, and when to say so.

Three things end a node's service on a date nobody watches: its own certificate (no peer
accepts it), a trusted CA's certificate (every peer under it is refused) and a CRL past its
next update (OpenSSL refuses every certificate that CA issued, CRL_HAS_EXPIRED: the classic
outage of a node whose CRL stopped being published). Each has a moment it becomes worth a
warning and a moment it expires; :class:`ExpiryWatch` says each change once, and names the
next moment to look again, so a node running for months warns on the day.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from dicomtls.tls.names import certificate_names, print_name
from dicomtls.tls.settings import TLSSettings

__all__ = ["EXPIRY_WARNING_DAYS", "Deadline", "ExpiryWatch", "deadlines", "expired_alert_hint"]

EXPIRY_WARNING_DAYS = 30
"""A certificate's warning comes this long before it expires."""
CRL_WARNING = dt.timedelta(days=3)
"""A CRL's warning comes this long before its next update, or a quarter of its life if that is
shorter: a CRL published daily and valid a week warns after four missed days."""


_WHOLE_SECOND = dt.timedelta(seconds=1)
"""OpenSSL compares whole seconds and still takes the last one as valid: it refuses from the
second after ``notAfter`` or ``nextUpdate``."""


class State(enum.Enum):
    FINE = "fine"
    SOON = "soon"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Deadline:
    """One thing that expires: what it is, when to warn, when it ends, and the sentences."""

    kind: str
    """``ours`` (our certificate), ``ca`` (a trusted CA) or ``crl``."""
    name: str
    """Its subject (a CRL: its issuer), as certificate names are shown."""
    key: str
    warn_at: dt.datetime
    expires_at: dt.datetime
    soon: Callable[[dt.timedelta], str]
    """The warning, given the time left."""
    expired: str

    def state(self, now: dt.datetime) -> State:
        if now >= self.expires_at + _WHOLE_SECOND:
            return State.EXPIRED
        return State.SOON if now >= self.warn_at else State.FINE

    def sentence(self, now: dt.datetime) -> str:
        state = self.state(now)
        left = max(self.expires_at - now, dt.timedelta(0))
        return self.expired if state is State.EXPIRED else self.soon(left)


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _days(left: dt.timedelta) -> str:
    return f"{left.total_seconds() / 86400:.1f} days"


def _certificate(cert: x509.Certificate, kind: str, what: str, soon: str, expired: str) -> Deadline:
    """A certificate's deadline: ``what`` it is, and the advice ``soon`` and once ``expired``."""
    end = cert.not_valid_after_utc
    return Deadline(
        kind=kind,
        name=certificate_names(cert)[0].readable,
        key=cert.fingerprint(hashes.SHA256()).hex(),
        warn_at=end - dt.timedelta(days=EXPIRY_WARNING_DAYS),
        expires_at=end,
        soon=lambda left: f"{what} expires in {_days(left)} ({_when(end)}): {soon}",
        expired=f"{what} expired on {_when(end)}{expired}",
    )


def _own_certificate(cert: x509.Certificate) -> Deadline:
    return _certificate(
        cert,
        "ours",
        f"our certificate {cert.subject.rfc4514_string()!r}",
        "renew it; the node picks up the new files by itself",
        "",
    )


def _trusted_ca(cert: x509.Certificate) -> Deadline:
    return _certificate(
        cert,
        "ca",
        f"the trusted CA '{certificate_names(cert)[0].readable}'",
        "from then on every peer whose chain ends in it is refused; add its successor to the "
        "CA file",
        ": every peer whose chain ends in it is refused (CERT_HAS_EXPIRED); add its successor "
        "to the CA file",
    )


def _crl(crl: x509.CertificateRevocationList) -> Deadline | None:
    end = crl.next_update_utc
    if end is None:  # a CRL without a next update never expires for OpenSSL
        return None
    issuer = print_name(crl.issuer.public_bytes()).readable
    lead = min(CRL_WARNING, (end - crl.last_update_utc) / 4)
    return Deadline(
        kind="crl",
        name=issuer,
        key=f"crl:{issuer}:{end.isoformat()}",
        warn_at=end - lead,
        expires_at=end,
        soon=lambda left: (
            f"the CRL of '{issuer}' reaches its next update in {_days(left)} ({_when(end)}): "
            "once past it, every peer whose certificate that CA issued is refused "
            "(CRL_HAS_EXPIRED); publish a fresh CRL, the node picks it up by itself"
        ),
        expired=(
            f"the CRL of '{issuer}' expired on {_when(end)}: every peer whose certificate that "
            "CA issued is refused (CRL_HAS_EXPIRED) until a fresh CRL is in place; the node "
            "picks it up by itself"
        ),
    )


def deadlines(settings: TLSSettings) -> list[Deadline]:
    """Everything in ``settings`` that expires: our certificate, each trusted CA, each CRL."""
    found = [] if settings.identity is None else [_own_certificate(settings.identity.certificate)]
    found += [_trusted_ca(ca) for ca in settings.trust.ca_certificates]
    found += [d for crl in settings.trust.crls if (d := _crl(crl)) is not None]
    return found


class ExpiryWatch:
    """Says each deadline's change (fine -> soon -> expired) once, across reloads."""

    def __init__(self) -> None:
        self._said: dict[str, State] = {}

    def check(self, found: Sequence[Deadline], now: dt.datetime | None = None) -> list[str]:
        """The warnings due now (of the :func:`deadlines` ``found``) that were not said yet."""
        now = now or dt.datetime.now(dt.UTC)
        warnings = []
        for deadline in found:
            state = deadline.state(now)
            if state is not State.FINE and self._said.get(deadline.key) is not state:
                warnings.append(deadline.sentence(now))
            self._said[deadline.key] = state
        return warnings

    @staticmethod
    def next_check(found: Sequence[Deadline], now: dt.datetime | None = None) -> dt.datetime | None:
        """The next moment one of ``found`` changes state; None when nothing is ahead."""
        now = now or dt.datetime.now(dt.UTC)
        moments = [
            moment
            for deadline in found
            for moment in (deadline.warn_at, deadline.expires_at + _WHOLE_SECOND)
            if moment > now
        ]
        return min(moments, default=None)


def expired_alert_hint(ours: x509.Certificate | None, now: dt.datetime | None = None) -> str | None:
    """For a peer's ``certificate_expired`` alert while our certificate is valid: OpenSSL sends
    that alert for an expired CRL too, so the peer's clock or its CRL is what ran out."""
    now = now or dt.datetime.now(dt.UTC)
    if ours is None or not ours.not_valid_before_utc <= now <= ours.not_valid_after_utc:
        return None
    return (
        f"our certificate is valid until {_when(ours.not_valid_after_utc)}: the peer's clock is "
        "off, or the CRL it checks ours against has passed its next update (its administrator "
        "should publish a fresh one)"
    )

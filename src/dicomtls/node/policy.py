"""Access policy: tie the AE title a peer claims to the certificate it proved it holds.

TLS proves which certificate a peer holds; DICOM believes whatever calling AE
title the peer writes into its A-ASSOCIATE-RQ. An :class:`AccessPolicy` closes
that gap. Each :class:`AccessRule` binds one calling AE title to a certificate
(its subject CN, when the subject has just one, compared like a host name; a
subjectAltName entry; or its SHA-256 fingerprint) and says
which services that peer may use and where its C-MOVEs may go.

Decisions, in order:

1. The calling AE title has rules: the peer's certificate must match one of
   them, else the association is rejected ("calling AE title not recognized")
   and the log names every rule that did not match and why.
2. The certificate is bound by a rule to *another* AE title: rejected too, since
   a bound certificate says who the peer is.
3. No rule concerns the peer: ``unknown_ae = "reject"`` rejects it; the default
   (``"allow"``) grants ``default_services`` (echo, store, find, move, get), with
   C-MOVE only to configured destinations. C-GET, like C-FIND, returns data only to
   the authenticated caller on its own association, so it needs no destination.

A certificate that failed verification, let through by a verify callback, proves
nothing: it matches no rule and binds no title, like no certificate at all.

The policy is read from the ``[access]`` table of the node's TOML configuration.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.x509.oid import NameOID

from dicomtls.dimse.sop_classes import Service
from dicomtls.errors import DicomTLSError
from dicomtls.net.hooks import Admission, RequestInfo
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.names import subject_values

__all__ = ["AccessPolicy", "AccessRule", "CertificateMatch", "PolicyError"]

ALL_SERVICES = frozenset(Service)
_SAN_KINDS = ("DNS", "IP", "URI", "email")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _folded(name: str) -> str:
    """``name`` with its ASCII letters in lower case, and nothing else changed.

    Names differ in ASCII case only as spellings of one name (DNS names, RFC 4343).
    ``str.casefold`` goes further: the Kelvin sign becomes ``k``, a long s ``s``, ``ß``
    ``ss``, so a certificate our CA issued for another name would pass for the bound one.
    """
    return name.translate(_ASCII_LOWER)


class PolicyError(DicomTLSError, ValueError):
    """The access configuration is wrong; the message names the rule and the key."""


@dataclass(frozen=True)
class CertificateMatch:
    """How a rule recognises the peer's certificate: one of CN, a SAN entry, a fingerprint."""

    kind: Literal["cn", "san", "fingerprint"]
    value: str

    def matches(self, cert: CertificateInfo) -> bool:
        if self.kind == "fingerprint":
            return _fingerprint(cert.sha256_fingerprint) == self.value
        if self.kind == "cn":
            # One CN names the holder; a subject with several names several holders, and
            # binding it to one title by any of them would let one certificate be two peers.
            names = subject_values(cert.certificate, NameOID.COMMON_NAME.dotted_string)
            return len(names) == 1 and _folded(names[0]) == _folded(self.value)
        return self.value in _san_entries(cert)

    def __str__(self) -> str:
        if self.kind == "san":
            return f"subjectAltName {self.value}"
        return f"{'CN' if self.kind == 'cn' else 'SHA-256 fingerprint'} {self.value!r}"

    @classmethod
    def parse(cls, table: Any, where: str) -> CertificateMatch:
        if not isinstance(table, Mapping) or len(table) != 1:
            raise PolicyError(
                f'{where}: certificate must be one of {{ cn = ... }}, {{ san = "DNS:..." }}, '
                "{ fingerprint = ... }"
            )
        ((kind, value),) = table.items()
        if kind not in ("cn", "san", "fingerprint") or not isinstance(value, str) or not value:
            raise PolicyError(
                f"{where}: certificate key must be cn, san or fingerprint with a text value, "
                f"not {kind} = {value!r}"
            )
        if kind == "fingerprint":
            normal = _fingerprint(value)
            if not _HEX.match(normal):
                raise PolicyError(
                    f"{where}: {value!r} is not a SHA-256 fingerprint (64 hex digits)"
                )
            return cls("fingerprint", normal)
        if kind == "san":
            return cls("san", _san_value(value, where))
        return cls("cn", value.strip())


def _fingerprint(text: str) -> str:
    text = text.strip().lower()
    text = text.removeprefix("sha256:").removeprefix("sha-256:")
    return text.replace(":", "").replace(" ", "")


def _san_value(text: str, where: str) -> str:
    kind, sep, value = text.partition(":")
    canonical = {k.casefold(): k for k in _SAN_KINDS}.get(kind.strip().casefold())
    if not sep or canonical is None or not value.strip():
        raise PolicyError(
            f"{where}: san = {text!r}: write it as DNS:name, IP:address, URI:uri or email:address"
        )
    value = value.strip()
    if canonical == "IP":
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError:
            raise PolicyError(f"{where}: san = {text!r}: {value!r} is not an IP address") from None
    if canonical == "DNS":
        value = _folded(value)
    return f"{canonical}:{value}"


def _san_entries(cert: CertificateInfo) -> set[str]:
    entries = {f"DNS:{_folded(name)}" for name in cert.dns_names}
    entries.update(f"IP:{ipaddress.ip_address(a)}" for a in cert.ip_addresses)
    entries.update(f"URI:{u}" for u in cert.uris)
    entries.update(f"email:{e}" for e in cert.emails)
    return entries


def _services(value: Any, where: str) -> frozenset[Service]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f'{where}: services must be a list such as ["echo", "store"]')
    try:
        return frozenset(Service(v.strip().lower()) for v in value)
    except ValueError:
        names = ", ".join(s.value for s in Service)
        raise PolicyError(f"{where}: services {value!r}: each must be one of {names}") from None


def _ae_list(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PolicyError(f"{where}: must be a list of AE titles")
    return frozenset(v.strip() for v in value)


@dataclass(frozen=True)
class AccessRule:
    """One binding: this calling AE title, held by this certificate, may do these things."""

    name: str
    ae_title: str
    certificate: CertificateMatch
    services: frozenset[Service] = ALL_SERVICES
    move_destinations: frozenset[str] | None = None
    """Where this peer's C-MOVEs may go (None: any configured destination)."""

    @property
    def label(self) -> str:
        return f"rule {self.name!r}"

    @classmethod
    def parse(cls, table: Any, index: int) -> AccessRule:
        where = f"access.rule[{index}]"
        if not isinstance(table, Mapping):
            raise PolicyError(f"{where}: must be a table ([[access.rule]])")
        name = str(table.get("name", f"#{index + 1}"))
        where = f"access rule {name!r}"
        unknown = set(table) - {"name", "ae_title", "certificate", "services", "move_destinations"}
        if unknown:
            raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        ae_title = table.get("ae_title")
        if not isinstance(ae_title, str) or not 0 < len(ae_title.strip()) <= 16:
            raise PolicyError(f"{where}: ae_title must be an AE title of 1 to 16 characters")
        if "certificate" not in table:
            raise PolicyError(f"{where}: certificate is missing (cn, san or fingerprint)")
        destinations = table.get("move_destinations")
        return cls(
            name=name,
            ae_title=ae_title.strip(),
            certificate=CertificateMatch.parse(table["certificate"], where),
            services=_services(table["services"], where) if "services" in table else ALL_SERVICES,
            move_destinations=None
            if destinations is None
            else _ae_list(destinations, f"{where}: move_destinations"),
        )


def _rules(rules: Any) -> tuple[AccessRule, ...]:
    """The ``[[access.rule]]`` tables, each read, their names unique."""
    if not isinstance(rules, list):
        raise PolicyError("access.rule must be an array of tables ([[access.rule]])")
    parsed = tuple(AccessRule.parse(rule, i) for i, rule in enumerate(rules))
    names = [r.name for r in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PolicyError(f"access: rule name(s) used twice: {', '.join(duplicates)}")
    return parsed


def _holder(certificate: CertificateInfo | None) -> str:
    """The peer's certificate as a reason names it."""
    return "no certificate" if certificate is None else f"'{certificate.readable_subject}'"


@dataclass(frozen=True)
class AccessPolicy:
    """Who may associate and what they may do; see the module docstring for the order."""

    rules: tuple[AccessRule, ...] = ()
    unknown_ae: Literal["allow", "reject"] = "allow"
    default_services: frozenset[Service] = ALL_SERVICES
    destinations: frozenset[str] = field(default_factory=frozenset)
    """The node's configured C-MOVE destinations (AE titles)."""

    @classmethod
    def from_config(
        cls, table: Mapping[str, Any] | None, destinations: Iterable[str] = ()
    ) -> AccessPolicy:
        """Read the ``[access]`` table of a node configuration (None: the default policy)."""
        table = table or {}
        unknown = set(table) - {"rule", "unknown_ae", "default_services"}
        if unknown:
            raise PolicyError(f"access: unknown key(s) {', '.join(sorted(unknown))}")
        rules = _rules(table.get("rule", []))
        unknown_ae = table.get("unknown_ae", "allow")
        if unknown_ae not in ("allow", "reject"):
            raise PolicyError(f"access.unknown_ae must be 'allow' or 'reject', not {unknown_ae!r}")
        default = table.get("default_services")
        return cls(
            rules=rules,
            unknown_ae=unknown_ae,
            default_services=ALL_SERVICES
            if default is None
            else _services(default, "access.default_services"),
            destinations=frozenset(destinations),
        )

    def __call__(self, request: RequestInfo) -> Admission:
        # Without rules the certificate decides nothing: do not describe it for nothing.
        if not self.rules:
            return self.admit(request.calling_ae, None)
        failed = None if request.session is None else request.session.verify_result
        if failed is not None and not failed.ok:
            # A verify callback let a certificate through that failed verification: it
            # proves nothing, so it is held to no rule and bound to no title.
            holder = f"a certificate that failed verification ({failed})"
            return self.admit(request.calling_ae, None, holder=holder)
        return self.admit(request.calling_ae, request.certificate)

    def admit(
        self, calling_ae: str, certificate: CertificateInfo | None, *, holder: str | None = None
    ) -> Admission:
        """The decision for a peer claiming ``calling_ae`` and holding ``certificate``
        (``holder`` says what it presented instead, when it is None)."""
        claimed = [r for r in self.rules if r.ae_title == calling_ae]
        if claimed:
            return self._by_title(claimed, calling_ae, certificate, holder or _holder(certificate))
        bound = [] if certificate is None else self._bound(certificate)
        if bound:  # decision 2: a bound certificate says who the peer is
            titles = ", ".join(sorted({repr(r.ae_title) for r in bound}))
            return Admission.reject(
                f"certificate {_holder(certificate)} is bound to {titles} by {bound[0].label}, "
                f"but claims {calling_ae!r}",
                rule=bound[0].label,
            )
        if self.unknown_ae == "reject":  # decision 3: no rule concerns the peer
            return Admission.reject(
                f"no access rule names {calling_ae!r} (access.unknown_ae = 'reject')",
                rule="access.unknown_ae",
            )
        return Admission(
            services=self.default_services, move_destinations=None, rule="the default access policy"
        )

    def _by_title(
        self,
        claimed: list[AccessRule],
        calling_ae: str,
        certificate: CertificateInfo | None,
        holder: str,
    ) -> Admission:
        """Decision 1: the rules for the title claimed; the first the certificate matches."""
        for rule in claimed:
            if certificate is not None and rule.certificate.matches(certificate):
                return self._grant(rule)
        failed = "; ".join(f"{r.label} requires {r.certificate}" for r in claimed)
        return Admission.reject(
            f"{calling_ae!r} is bound to a certificate and the peer presented {holder}: {failed}",
            rule=claimed[0].label,
        )

    def _bound(self, certificate: CertificateInfo) -> list[AccessRule]:
        """The rules that bind ``certificate`` (to whatever title)."""
        return [r for r in self.rules if r.certificate.matches(certificate)]

    def _grant(self, rule: AccessRule) -> Admission:
        # A destination must also be configured on the node: the SCP checks that itself.
        return Admission(
            services=rule.services, move_destinations=rule.move_destinations, rule=rule.label
        )

    def describe(self) -> str:
        """One line for the startup log."""
        return (
            f"{len(self.rules)} access rule(s); unknown AE titles: {self.unknown_ae} "
            f"({', '.join(sorted(s.value for s in self.default_services))})"
        )

"""The DICOM PS3.15 Annex B TLS security profiles: which TLS versions and suites each allows.

B.12 (BCP 195 RFC 8996) is our default: TLS 1.2 and 1.3 only, with the four ECDHE
AES-GCM suites RFC 9325 section 4.2 recommends. B.13 (Modified BCP 195 RFC 8996)
adds CHACHA20 and CCM suites and names its TLS 1.3 suites. The retired profiles
(B.3 AES, B.9 BCP 195, B.10 Non-Downgrading BCP 195, B.11 Extended BCP 195) exist
for old devices only, as an explicit opt-in with a warning. Suite lists follow the
standard as DCMTK's dcmtls implements it (tlsciphr.cc); B.13's Camellia-GCM suites
are omitted because OpenSSL does not implement them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from OpenSSL import SSL

from dicomtls.errors import DicomTLSError
from dicomtls.tls.ciphers import CipherSuite, lookup_cipher

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "SecurityProfile",
    "TLSVersion",
    "UnknownProfile",
    "get_profile",
]


class UnknownProfile(DicomTLSError, ValueError):
    """A profile name we do not know."""


class TLSVersion(enum.Enum):
    """TLS protocol versions, ordered, each with its OpenSSL constant and display name."""

    TLSv1 = (1, "TLSv1", SSL.TLS1_VERSION)
    TLSv1_1 = (2, "TLSv1.1", SSL.TLS1_1_VERSION)
    TLSv1_2 = (3, "TLSv1.2", SSL.TLS1_2_VERSION)
    TLSv1_3 = (4, "TLSv1.3", SSL.TLS1_3_VERSION)

    @property
    def rank(self) -> int:
        rank: int = self.value[0]
        return rank

    @property
    def display_name(self) -> str:
        name: str = self.value[1]
        return name

    @property
    def openssl_constant(self) -> int:
        constant: int = self.value[2]
        return constant

    @classmethod
    def from_name(cls, name: str) -> TLSVersion:
        for version in cls:
            if version.display_name == name:
                return version
        raise ValueError(f"unknown TLS version {name!r}")


_TLS13_DEFAULT = (
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
)


@dataclass(frozen=True, kw_only=True)
class SecurityProfile:
    """One PS3.15 Annex B secure transport connection profile.

    The defaults are what BCP 195 asks of them all: TLS 1.2 and 1.3, the three TLS 1.3
    suites, RSA keys of 2048 bits and EC keys of 256; a profile states where it differs.
    """

    name: str
    annex: str
    title: str
    retired: bool = False
    min_version: TLSVersion = TLSVersion.TLSv1_2
    max_version: TLSVersion = TLSVersion.TLSv1_3
    tls12_suites: tuple[str, ...]
    """IANA names for TLS 1.2 and below, in our (server) preference order."""
    tls13_suites: tuple[str, ...] = _TLS13_DEFAULT
    min_rsa_bits: int = 2048
    min_ec_bits: int = 256
    openssl_security_level: int = 2
    """OpenSSL's SECLEVEL: 2 enforces RSA >= 2048 and SHA-256 signatures; TLS < 1.2 needs 0."""

    @property
    def versions(self) -> tuple[TLSVersion, ...]:
        return tuple(
            v for v in TLSVersion if self.min_version.rank <= v.rank <= self.max_version.rank
        )

    def suites(self) -> tuple[CipherSuite, ...]:
        return tuple(lookup_cipher(n) for n in (*self.tls12_suites, *self.tls13_suites))

    def openssl_cipher_string(self) -> str:
        names = [lookup_cipher(n).openssl_name for n in self.tls12_suites]
        return ":".join([*names, f"@SECLEVEL={self.openssl_security_level}"])

    def openssl_tls13_ciphersuites(self) -> str:
        return ":".join(self.tls13_suites)

    def allows(self, suite: CipherSuite, version: TLSVersion) -> bool:
        """Whether this profile permits ``suite`` negotiated under ``version``."""
        return self.forbidden_reason(suite, version) is None

    def forbidden_reason(self, suite: CipherSuite, version: TLSVersion) -> str | None:
        """Why ``suite`` under ``version`` is outside this profile, or None if it is inside."""
        if version not in self.versions:
            allowed = ", ".join(v.display_name for v in self.versions)
            return f"{version.display_name} is not allowed by {self.annex} (allowed: {allowed})"
        if suite.tls13 != (version is TLSVersion.TLSv1_3):
            return f"{suite.iana_name} cannot be negotiated under {version.display_name}"
        allowed_names = self.tls13_suites if suite.tls13 else self.tls12_suites
        if suite.iana_name not in allowed_names:
            return f"{suite.iana_name} is not one of the suites {self.annex} allows"
        return None


_B12_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
)
_B10_SUITES = (
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
)

_ALL_PROFILES = (
    SecurityProfile(
        name="bcp195-rfc8996",
        annex="B.12",
        title="BCP 195 RFC 8996 TLS Secure Transport Connection Profile",
        tls12_suites=_B12_SUITES,
    ),
    SecurityProfile(
        name="bcp195-rfc8996-modified",
        annex="B.13",
        title="Modified BCP 195 RFC 8996 TLS Secure Transport Connection Profile",
        tls12_suites=(
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
            "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
            "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
        ),
        tls13_suites=(*_TLS13_DEFAULT, "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"),
    ),
    SecurityProfile(
        name="bcp195-nd",
        annex="B.10",
        title="Non-Downgrading BCP 195 TLS Secure Transport Connection Profile (retired)",
        retired=True,
        tls12_suites=_B10_SUITES,
    ),
    SecurityProfile(
        name="bcp195-ex",
        annex="B.11",
        title="Extended BCP 195 TLS Secure Transport Connection Profile (retired)",
        retired=True,
        max_version=TLSVersion.TLSv1_2,
        tls12_suites=(
            *_B10_SUITES,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        tls13_suites=(),
    ),
    SecurityProfile(
        name="bcp195",
        annex="B.9",
        title="BCP 195 TLS Secure Transport Connection Profile (retired)",
        retired=True,
        min_version=TLSVersion.TLSv1,
        tls12_suites=(*_B10_SUITES, "TLS_RSA_WITH_AES_128_CBC_SHA"),
        min_rsa_bits=1024,
        min_ec_bits=160,
        openssl_security_level=0,
    ),
    SecurityProfile(
        name="aes",
        annex="B.3",
        title="AES TLS Secure Transport Connection Profile (retired)",
        retired=True,
        min_version=TLSVersion.TLSv1,
        max_version=TLSVersion.TLSv1_2,
        tls12_suites=("TLS_RSA_WITH_AES_128_CBC_SHA",),
        tls13_suites=(),
        min_rsa_bits=1024,
        min_ec_bits=160,
        openssl_security_level=0,
    ),
)

PROFILES: Mapping[str, SecurityProfile] = MappingProxyType({p.name: p for p in _ALL_PROFILES})
DEFAULT_PROFILE = "bcp195-rfc8996"


def get_profile(name: str) -> SecurityProfile:
    """The profile called ``name`` (case-insensitive), or UnknownProfile listing the choices."""
    profile = PROFILES.get(name.strip().lower())
    if profile is None:
        raise UnknownProfile(
            f"unknown TLS security profile {name!r}; choose one of: {', '.join(PROFILES)}"
        )
    return profile

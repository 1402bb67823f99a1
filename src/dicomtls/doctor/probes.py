"""``dicomtls doctor``: probe a DICOM node step by step and say why a secure connection fails.

Steps, in the order a connection goes through them: TCP reachability; TLS or plain
DICOM on the port; the TLS versions and cipher suites accepted, judged against the
PS3.15 profiles; the server's certificate chain as the verify callback sees it;
whether our client certificate is wanted and accepted; then the DICOM association
and C-ECHO over the working link.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from dicomtls.doctor.report import REJECTION_FIXES, Report, Step, Verdict
from dicomtls.errors import ConnectError
from dicomtls.net.association import Association, AssociationError, default_proposals
from dicomtls.net.client import Peer
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.ciphers import CIPHER_SUITES
from dicomtls.tls.errors import HandshakeStage, TLSHandshakeError, alert_meaning
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.hostnames import dns_name_matches
from dicomtls.tls.issuers import issuer_hint
from dicomtls.tls.profiles import PROFILES, TLSVersion
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyError

__all__ = ["DoctorOptions", "diagnose"]

_SSL_VERSIONS = {
    TLSVersion.TLSv1: ssl.TLSVersion.TLSv1,
    TLSVersion.TLSv1_1: ssl.TLSVersion.TLSv1_1,
    TLSVersion.TLSv1_2: ssl.TLSVersion.TLSv1_2,
    TLSVersion.TLSv1_3: ssl.TLSVersion.TLSv1_3,
}
_REFUSED_VERSION = (
    "protocol version",
    "unsupported protocol",
    "no protocols available",
    "wrong version number",
    "version too low",
    "tlsv1 alert protocol",
)
_REFUSED_CIPHER = (
    "handshake failure",
    "no shared cipher",
    "no ciphers available",
    "insufficient security",
)


@dataclass(frozen=True)
class DoctorOptions(Peer):
    """The node to examine, as a :class:`~dicomtls.net.client.Peer`, and how patiently."""

    calling_ae: str = "DICOMTLS-DOCTOR"
    check_hostname: bool = False
    """Also hold the server's certificate to ``host`` (a finding either way)."""
    timeout: float = 5.0
    """Seconds each connection and handshake may take."""


async def diagnose(options: DoctorOptions) -> Report:
    report = Report(f"{options.host}:{options.port}")
    if not await _tcp(report, options):
        return report
    calls: list[tuple[bool, CertificateInfo, VerifyError]] = []
    plain = options.tls is None or await _protocol(report, options, calls)
    if plain:
        for name in ("tls-versions", "cipher-suites", "certificate-chain", "client-certificate"):
            report.add(Step(name, Verdict.SKIP, "no TLS on this connection"))
        await _dicom(report, options, None)
        return report
    await _versions_and_ciphers(report, options)
    _chain(report, options, calls)
    await _dicom(report, options, _probe_settings(options, []))
    return report


# -- 1. TCP ------------------------------------------------------------------------------------


async def _tcp(report: Report, options: DoctorOptions) -> bool:
    target = f"{options.host}:{options.port}"
    try:
        async with asyncio.timeout(options.timeout):
            _, writer = await asyncio.open_connection(options.host, options.port)
    except socket.gaierror as exc:
        report.add(
            Step(
                "tcp",
                Verdict.FAIL,
                f"cannot resolve {options.host!r}: {exc.strerror}",
                code="DNS",
                fix="check the host name, or use the IP address",
                side="network",
            )
        )
        return False
    except ConnectionRefusedError:
        report.add(
            Step(
                "tcp",
                Verdict.FAIL,
                f"{target} refused the connection: nothing listens there",
                code="CONNECTION_REFUSED",
                side="peer",
                fix="start the DICOM node, or check the port (DICOM TLS is usually 2762)",
            )
        )
        return False
    except (TimeoutError, OSError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        report.add(
            Step(
                "tcp",
                Verdict.FAIL,
                f"{target}: {reason} within {options.timeout:g} s",
                code="TCP_TIMEOUT",
                side="network",
                fix="a firewall may drop the traffic; check routing and firewall rules",
            )
        )
        return False
    writer.close()
    report.add(Step("tcp", Verdict.PASS, f"{target} accepts TCP connections"))
    return True


# -- 2. TLS or plain -----------------------------------------------------------------------------


def _probe_settings(
    options: DoctorOptions, calls: list[tuple[bool, CertificateInfo, VerifyError]]
) -> TLSSettings:
    """The user's settings, but recording every certificate and never stopping on one,
    so that one problem does not hide the next."""
    assert options.tls is not None

    def record(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        calls.append((ok, cert, error))
        return True

    verify = VerifyFlags.PEER if options.tls.trust.ca_certificates else VerifyFlags.NONE
    return dataclasses.replace(
        options.tls,
        on_verify=record,
        verify=verify,
        check_hostname=False,
        handshake_timeout=options.timeout,
    )


async def _associate(options: DoctorOptions, tls: TLSSettings | None) -> Association:
    """An association with the node over ``tls`` (None: plain), proposing the usual contexts."""
    return await dataclasses.replace(options, tls=tls).associate(default_proposals())


async def _protocol(report: Report, options: DoctorOptions, calls: list[Any]) -> bool:
    """Step 2 (and the handshake the chain step reads); True when the port speaks plain DICOM."""
    try:
        assoc = await _associate(options, _probe_settings(options, calls))
    except TLSHandshakeError as error:
        if (
            error.stage is HandshakeStage.CLOSED
            and error.alert is None
            and await _speaks_plain_dicom(options)
        ):
            error.stage, error.reason = (
                HandshakeStage.NOT_TLS,
                (
                    "the node closed on our TLS ClientHello but answers a plain A-ASSOCIATE-RQ: "
                    "this port speaks DICOM without TLS"
                ),
            )
        return _handshake_failure(report, options, error)
    except ConnectError as exc:  # it answered the TCP step a moment ago
        report.add(
            Step(
                "protocol",
                Verdict.FAIL,
                str(exc),
                code="CONNECTION_REFUSED",
                side="peer",
                fix="the node stopped accepting connections: check it is still running",
            )
        )
        return False
    except AssociationError:
        pass  # TLS worked; the DICOM step reports the association itself
    else:
        await assoc.abort()
    report.add(Step("protocol", Verdict.PASS, "the port speaks TLS"))
    report.add(Step("client-certificate", Verdict.PASS, _client_cert_summary(options)))
    return False


async def _speaks_plain_dicom(options: DoctorOptions) -> bool:
    """Many plain DICOM nodes (DCMTK among them) just close on a TLS hello: ask them in DICOM."""
    try:
        assoc = await _associate(options, None)
    except AssociationError as exc:
        return "rejected the association" in str(exc)
    except (TLSHandshakeError, OSError):
        return False
    await assoc.abort()
    return True


def _client_cert_summary(options: DoctorOptions) -> str:
    if options.tls is not None and options.tls.identity is not None:
        return "the node accepted our certificate (or did not ask for one)"
    return "we sent no certificate and the node did not require one"


#: Alerts that refuse what we offered (versions, suites), not who we are.
_REFUSED_OFFER = ("protocol_version", "handshake_failure", "insufficient_security")


def _handshake_failure(report: Report, options: DoctorOptions, error: TLSHandshakeError) -> bool:
    """Step 2 after a failed handshake; True when the port speaks plain DICOM."""
    refused = error.stage in (HandshakeStage.PEER_REJECTED, HandshakeStage.CLOSED)
    if refused and error.alert not in _REFUSED_OFFER:
        report.add(Step("protocol", Verdict.PASS, "the port speaks TLS"))
        report.add(_refused_us(options, error))
        return False
    report.add(_protocol_failure(error))
    return error.stage is HandshakeStage.NOT_TLS


def _protocol_failure(error: TLSHandshakeError) -> Step:
    """No TLS on the port, no answer to our hello, or a handshake that broke off."""
    reason, code, side, fix = error.reason, str(error.stage).upper(), "peer", error.hint
    if error.stage is HandshakeStage.NOT_TLS:
        code, side = "NOT_TLS", "ours"
        fix = (
            "this port speaks plain DICOM: use the node's TLS port (often 2762), "
            "or --no-tls if plain is really intended"
        )
    elif error.stage is HandshakeStage.TIMEOUT:
        reason, code = "no TLS answer to our ClientHello", "TLS_TIMEOUT"
        fix = "the node may wait for plain DICOM, or be overloaded"
    return Step("protocol", Verdict.FAIL, reason, error.to_dict(), code=code, side=side, fix=fix)


def _refused_us(options: DoctorOptions, error: TLSHandshakeError) -> Step:
    """The node speaks TLS and refused us: without a certificate of ours, for want of one."""
    meaning = alert_meaning(error.alert) if error.alert else error.reason
    code = (error.alert or "closed").upper()
    fix = error.hint or "read the node's log for why it refused us"
    if options.tls is None or options.tls.identity is None:
        code = "CLIENT_CERTIFICATE_REQUIRED"
        fix = "give --tls-cert and --tls-key issued by a CA the node trusts"
    return Step(
        "client-certificate",
        Verdict.FAIL,
        f"the node refused us: {meaning}"
        + (f"; {error.issuers_note}" if error.issuers_note else ""),
        error.to_dict(),
        code=code,
        side=_side_to_change(error),
        fix=fix,
    )


def _side_to_change(error: TLSHandshakeError) -> str:
    """Where the fix the error hints at belongs: a node that does not know our CA must be
    given it; anything else about our certificate is ours to change."""
    return "peer" if error.alert == "unknown_ca" else "ours"


# -- 3. versions and suites ------------------------------------------------------------------


def _ssl_context(
    options: DoctorOptions, version: TLSVersion, ciphers: str | None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = _SSL_VERSIONS[version]
    ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
    tls = options.tls
    if tls is not None and tls.certificate is not None:
        key = None if tls.private_key is None else str(tls.private_key)
        password = tls.password if isinstance(tls.password, str | bytes) else None
        ctx.load_cert_chain(str(tls.certificate), key, password=password)
    return ctx


async def _try(options: DoctorOptions, ctx: ssl.SSLContext) -> tuple[bool | None, str]:
    """(accepted?, detail): None when the local OpenSSL cannot even offer it."""
    try:
        async with asyncio.timeout(options.timeout):
            _, writer = await asyncio.open_connection(
                options.host, options.port, ssl=ctx, server_hostname=None
            )
    except ssl.SSLError as exc:
        text = str(exc).lower()
        if "no protocols available" in text or "no ciphers available" in text:
            return None, "not offered by this machine's OpenSSL"
        refused = any(marker in text for marker in _REFUSED_VERSION + _REFUSED_CIPHER)
        return (not refused), str(exc)
    except TimeoutError:
        return None, "no answer in time (a busy single-threaded node?)"
    except OSError as exc:
        return False, str(exc) or type(exc).__name__
    cipher = writer.get_extra_info("cipher")
    writer.transport.abort()  # no TLS shutdown dance: a single-threaded node must not wait on us
    return True, f"{cipher[1]} {cipher[0]}" if cipher else "accepted"


async def _versions_and_ciphers(report: Report, options: DoctorOptions) -> None:
    versions = {version: await _offer_version(options, version) for version in TLSVersion}
    accepted = [v for v in TLSVersion if versions[v]["accepted"]]
    report.add(_versions_step({v.display_name: found for v, found in versions.items()}, accepted))
    if TLSVersion.TLSv1_2 not in accepted:
        report.add(
            Step(
                "cipher-suites",
                Verdict.SKIP,
                "TLS 1.2 not accepted: suites of TLS 1.3 are fixed sets",
            )
        )
        return
    _judge_suites(report, accepted, await _accepted_tls12_suites(options))


async def _offer_version(options: DoctorOptions, version: TLSVersion) -> dict[str, Any]:
    """Whether the node accepts ``version`` alone (None: this machine cannot offer it)."""
    try:
        ctx = _ssl_context(options, version, None)
    except ssl.SSLError as exc:
        return {"accepted": None, "detail": str(exc)}
    accepted, detail = await _try(options, ctx)
    return {"accepted": accepted, "detail": detail}


def _versions_step(versions: dict[str, Any], accepted: list[TLSVersion]) -> Step:
    old = [v.display_name for v in accepted if v.rank < TLSVersion.TLSv1_2.rank]
    if old:
        return Step(
            "tls-versions",
            Verdict.FAIL,
            f"the node accepts {', '.join(old)} (forbidden by RFC 8996)",
            {"versions": versions},
            code="OLD_TLS_ACCEPTED",
            side="peer",
            fix="disable TLS 1.0/1.1 on the node (use the BCP 195 RFC 8996 profile)",
        )
    if not accepted:
        return Step(
            "tls-versions",
            Verdict.FAIL,
            "no TLS version was accepted",
            {"versions": versions},
            code="NO_TLS_VERSION",
            side="peer",
            fix="check the node's TLS configuration",
        )
    names = ", ".join(v.display_name for v in accepted)
    return Step("tls-versions", Verdict.PASS, f"accepts {names}", {"versions": versions})


async def _accepted_tls12_suites(options: DoctorOptions) -> list[Any]:
    """The TLS 1.2 suites the node accepts, each offered alone (those this OpenSSL has)."""
    accepted = []
    for suite in CIPHER_SUITES:
        if suite.tls13:
            continue
        try:
            ctx = _ssl_context(options, TLSVersion.TLSv1_2, suite.openssl_name)
        except ssl.SSLError:
            continue  # this OpenSSL does not have the suite
        if (await _try(options, ctx))[0]:
            accepted.append(suite)
    return accepted


def _profiles_satisfied(versions: list[TLSVersion], suites: list[Any]) -> list[str]:
    """The current profiles that allow every accepted version and suite."""
    if not suites:
        return []
    return [
        f"{profile.name} ({profile.annex})"
        for profile in PROFILES.values()
        if not profile.retired
        and all(v in profile.versions for v in versions)
        and all(s.iana_name in profile.tls12_suites for s in suites)
    ]


def _judge_suites(report: Report, versions: list[TLSVersion], suites: list[Any]) -> None:
    satisfied = _profiles_satisfied(versions, suites)
    forbidden = [s.iana_name for s in suites if not s.forward_secret or not s.aead]
    evidence = {"accepted_tls12": [s.iana_name for s in suites], "profiles_satisfied": satisfied}
    if forbidden:
        report.add(
            Step(
                "cipher-suites",
                Verdict.WARN,
                f"accepts suites outside BCP 195: {', '.join(forbidden)}",
                evidence,
                code="FORBIDDEN_SUITES",
                side="peer",
                fix="restrict the node to ECDHE with AES-GCM/CHACHA20 (profile bcp195-rfc8996)",
            )
        )
    elif not satisfied:
        report.add(
            Step(
                "cipher-suites",
                Verdict.WARN,
                "suites satisfy no current DICOM profile",
                evidence,
                code="NO_PROFILE",
                side="peer",
                fix="configure profile B.12 or B.13 on the node",
            )
        )
    else:
        report.add(
            Step("cipher-suites", Verdict.PASS, f"satisfies {', '.join(satisfied)}", evidence)
        )


# -- 4. the chain ----------------------------------------------------------------------------


def _matches_host(info: CertificateInfo, host: str) -> bool:
    try:
        return str(ipaddress.ip_address(host)) in info.ip_addresses
    except ValueError:
        return any(dns_name_matches(name, host) for name in info.dns_names)


#: One finding about the chain: level ("FAIL" or "WARN"), code, what it says.
_Problem = tuple[str, str, str]


def _chain(
    report: Report, options: DoctorOptions, calls: list[tuple[bool, CertificateInfo, VerifyError]]
) -> None:
    if not calls:
        report.add(
            Step("certificate-chain", Verdict.SKIP, "the handshake ended before the certificate")
        )
        return
    problems: list[_Problem] = []
    evidence = []
    trusted = () if options.tls is None else options.tls.trust.ca_certificates
    for info, error in _verified(calls):
        hint = issuer_hint(info, error, trusted)
        evidence.append(
            {"certificate": str(info), "code": error.name, "hint": None if error.ok else hint}
        )
        problems += _certificate_problems(info, error, hint)
        if info.depth == 0:
            problems += _leaf_problems(info, options)
    report.add(_chain_step(problems, evidence))


def _verified(
    calls: list[tuple[bool, CertificateInfo, VerifyError]],
) -> list[tuple[CertificateInfo, VerifyError]]:
    """Each certificate once, leaf first, with the first error any call reported for it
    (else the last call's verdict): the callback may see a certificate more than once."""
    last = {info.depth: (info, error) for _ok, info, error in calls}
    verified = []
    for depth in sorted(last):
        info, error = last[depth]
        first_error = next((e for _, c, e in calls if c.depth == depth and not e.ok), error)
        verified.append((info, first_error))
    return verified


def _chain_step(problems: list[_Problem], evidence: list[dict[str, Any]]) -> Step:
    """The chain's step: a pass, else the first of its worst problems, with all of them."""
    if not problems:
        return Step(
            "certificate-chain",
            Verdict.PASS,
            f"{len(evidence)} certificate(s) verify",
            {"chain": evidence},
        )
    worst = "FAIL" if any(p[0] == "FAIL" for p in problems) else "WARN"
    _, code, text = next(p for p in problems if p[0] == worst)
    return Step(
        "certificate-chain",
        Verdict(worst),
        text,
        {"chain": evidence, "problems": problems},
        code=code,
        side="peer" if code != "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" else "ours",
        fix=text.split(". ", 1)[-1],
    )


def _certificate_problems(info: CertificateInfo, error: VerifyError, hint: str) -> list[_Problem]:
    """What is wrong with any certificate of the chain: its verification, its validity left."""
    problems = []
    if not error.ok:
        problems.append(("FAIL", error.name, f"{info.readable_subject}: {error.message}. {hint}"))
    left = info.not_after - dt.datetime.now(dt.UTC)
    if dt.timedelta(0) < left < dt.timedelta(days=30):
        problems.append(
            ("WARN", "EXPIRES_SOON", f"{info.readable_subject} expires in {left.days} days")
        )
    return problems


def _leaf_problems(info: CertificateInfo, options: DoctorOptions) -> list[_Problem]:
    """What is wrong with the node's own certificate: its purposes, the name it holds."""
    problems = []
    if not (info.has_server_auth and info.has_client_auth):
        problems.append(
            (
                "WARN",
                "MISSING_PURPOSE",
                f"{info.readable_subject} lacks serverAuth+clientAuth: "
                "DICOM nodes act as SCU and SCP",
            )
        )
    if not _matches_host(info, options.host):
        level = "FAIL" if options.check_hostname else "WARN"
        finding = f"{info.readable_subject} does not name {options.host!r}"
        problems.append((level, "HOSTNAME_MISMATCH", finding))
    return problems


# -- 6. DICOM ------------------------------------------------------------------------------


async def _dicom(report: Report, options: DoctorOptions, tls: TLSSettings | None) -> None:
    try:
        assoc = await _associate(options, tls)
    except AssociationError as exc:
        code = next(
            (
                r
                for r in (
                    "CALLED_AE_NOT_RECOGNIZED",
                    "CALLING_AE_NOT_RECOGNIZED",
                    "LOCAL_LIMIT_EXCEEDED",
                )
                if r in str(exc)
            ),
            "ASSOCIATION_FAILED",
        )
        fix = REJECTION_FIXES.get(code, "read the node's log")
        report.add(
            Step(
                "dicom-association",
                Verdict.FAIL,
                str(exc),
                code=code,
                side="ours" if "CALLED" in code else "peer",
                fix=fix,
            )
        )
        return
    except TLSHandshakeError as exc:
        report.add(
            Step(
                "dicom-association",
                Verdict.FAIL,
                str(exc),
                exc.to_dict(),
                code=str(exc.stage).upper(),
                side=_side_to_change(exc),
                fix=exc.hint,
            )
        )
        return
    except ConnectError as exc:
        report.add(
            Step(
                "dicom-association",
                Verdict.FAIL,
                str(exc),
                code="CONNECTION_REFUSED",
                side="peer",
                fix="the node stopped accepting connections: check it is still running",
            )
        )
        return
    async with assoc:
        negotiated = assoc.negotiated
        evidence = {
            "peer_max_pdu_length": negotiated.peer_max_pdu_length,
            "implementation_class_uid": negotiated.peer_implementation_class_uid,
            "implementation_version_name": negotiated.peer_implementation_version_name,
        }
        report.add(
            Step("dicom-association", Verdict.PASS, f"accepted by {options.called_ae}", evidence)
        )
        status = await assoc.echo()
    if status == 0:
        report.add(Step("c-echo", Verdict.PASS, "C-ECHO Success"))
    else:
        report.add(
            Step(
                "c-echo",
                Verdict.FAIL,
                f"C-ECHO status 0x{status:04X}",
                code="ECHO_FAILED",
                side="peer",
            )
        )

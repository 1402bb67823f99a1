"""``dicomtls pki``, ``inspect`` and ``ciphers``: certificates made, explained and matched to profiles."""

from __future__ import annotations

import datetime as dt
import json
from inspect import cleandoc
from pathlib import Path

import click
from rich.table import Table

from dicomtls.cli.render import make_console
from dicomtls.pki import BrokenKind, init_pki, load_ca
from dicomtls.pki.bundle import PKIFiles
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.ciphers import lookup_cipher
from dicomtls.tls.errors import SettingsError
from dicomtls.tls.files import parse_certificates
from dicomtls.tls.profiles import PROFILES, SecurityProfile

__all__ = ["ciphers", "inspect", "pki"]

console = make_console()


@click.group()
def pki() -> None:
    """A small test PKI: a CA, and node certificates with the right purposes."""


_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@pki.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_JSON
def pki_init(directory: Path, as_json: bool) -> None:
    """Create a CA with a server and a client identity.

    \b
    Example:
      dicomtls pki init ./pki
    """
    if PKIFiles(directory).ca.exists():
        raise click.UsageError(
            f"{directory} already holds a PKI (ca.pem); choose another directory"
        )
    files = init_pki(directory)
    made = [
        files.ca,
        files.ca_key,
        *(f(n) for n in ("server", "client") for f in (files.chain, files.key)),
    ]
    if as_json:
        print(json.dumps({"created": [str(p) for p in made]}))
        return
    console.print(
        f"created {files.ca}, {files.chain('server')}, {files.chain('client')} and their keys"
    )


@pki.command("issue")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("name")
@click.option("--server/--no-server", default=True, help="extendedKeyUsage serverAuth.")
@click.option("--client/--no-client", default=True, help="extendedKeyUsage clientAuth.")
@click.option("--ip", "ips", multiple=True, help="IP subjectAltName (repeatable).")
@click.option("--dns", "dns", multiple=True, help="DNS subjectAltName (repeatable).")
@click.option(
    "--broken",
    type=click.Choice([k.value for k in BrokenKind]),
    help="Issue a deliberately bad certificate for testing a peer.",
)
@_JSON
def pki_issue(
    directory: Path,
    name: str,
    server: bool,
    client: bool,
    ips: tuple[str, ...],
    dns: tuple[str, ...],
    broken: str | None,
    as_json: bool,
) -> None:
    """Issue a certificate from the PKI in DIRECTORY, as NAME-chain.pem and NAME.key.

    \b
    Examples:
      dicomtls pki issue ./pki modality --ip 10.0.0.9 --dns ct1.example.org
      dicomtls pki issue ./pki no-client --no-client
      dicomtls pki issue ./pki expired --broken expired
    """
    if not PKIFiles(directory).ca_key.exists():
        raise click.UsageError(
            f"{directory} has no ca.key: run 'dicomtls pki init {directory}' first"
        )
    ca = load_ca(directory)
    try:
        if broken:
            identity = ca.issue_broken(BrokenKind(broken), name)
        else:
            identity = ca.issue(name, server=server, client=client, dns=list(dns), ips=list(ips))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    files = identity.write(directory, name)
    if as_json:
        print(json.dumps({"chain": str(files.chain), "key": str(files.key), "broken": broken}))
        return
    what = f"broken ({BrokenKind(broken).description})" if broken else "certificate"
    console.print(f"issued {what}: {files.chain} and {files.key}")


# One line per kind, kept as written (\b), after the examples.
pki_issue.help = (
    cleandoc(pki_issue.help or "")
    + "\n\n\b\nKinds for --broken:\n"
    + "\n".join(f"  {k.value}: {k.description}" for k in BrokenKind)
)


def _warnings(info: CertificateInfo) -> list[str]:
    """What ``inspect`` warns of: the validity left, the strength, the purposes."""
    return [*_validity_warnings(info), *_strength_warnings(info), *_purpose_warnings(info)]


def _validity_warnings(info: CertificateInfo) -> list[str]:
    left = info.not_after - dt.datetime.now(dt.UTC)
    if left.total_seconds() < 0:
        return ["expired"]
    if left < dt.timedelta(days=30):
        return [f"expires in {left.days} days"]
    return []


#: The smallest key BCP 195 allows, by key type.
_MIN_KEY_BITS = {"RSA": 2048, "EC": 256}


def _strength_warnings(info: CertificateInfo) -> list[str]:
    found = []
    if info.key_bits < _MIN_KEY_BITS.get(info.key_type, 0):
        found.append(f"{info.key_description}: too small for the BCP 195 profiles")
    if info.signature_hash in ("sha1", "md5"):
        found.append(f"signed with {info.signature_hash}: too weak for the BCP 195 profiles")
    return found


def _purpose_warnings(info: CertificateInfo) -> list[str]:
    """A node's certificate serves as SCU and SCP: it needs both TLS purposes (not a CA's)."""
    if info.is_ca:
        return []
    found = []
    if not info.has_client_auth:
        found.append("no TLS client purpose (clientAuth): cannot act as SCU")
    if not info.has_server_auth:
        found.append("no TLS server purpose (serverAuth): cannot act as SCP")
    return found


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(file: Path, as_json: bool) -> None:
    """Explain a certificate or chain file: each certificate as the verify callback shows it.

    \b
    Example:
      dicomtls inspect dicom-store/pki/server-chain.pem
    """
    try:
        certs = parse_certificates(file.read_bytes(), file, "certificate")
    except SettingsError as exc:
        raise click.BadParameter(str(exc)) from None
    infos = [CertificateInfo.from_certificate(c, depth) for depth, c in enumerate(certs)]
    if as_json:
        print(json.dumps([{**i.to_dict(), "warnings": _warnings(i)} for i in infos]))
        return
    for info in infos:
        console.rule(f"certificate {info.depth}")
        console.print(str(info), markup=False)
        for warning in _warnings(info):
            console.print(f"[yellow]warning:[/yellow] {warning}")


@click.command()
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Only this profile.")
@_JSON
def ciphers(profile: str | None, as_json: bool) -> None:
    """The TLS versions and cipher suites each DICOM security profile allows.

    \b
    Example:
      dicomtls ciphers --profile bcp195-rfc8996
    """
    names = [profile] if profile else list(PROFILES)
    if as_json:
        print(json.dumps([_profile_json(PROFILES[name]) for name in names]))
        return
    for name in names:
        p = PROFILES[name]
        versions = ", ".join(v.display_name for v in p.versions)
        title = f"{p.name} — PS3.15 {p.annex}{' (retired)' if p.retired else ''}: {versions}"
        table = Table(title=title)
        for column in (
            "cipher suite (IANA)",
            "OpenSSL name",
            "key exchange",
            "auth",
            "encryption",
            "integrity",
        ):
            table.add_column(column)
        for iana in (*p.tls13_suites, *p.tls12_suites):
            suite = lookup_cipher(iana)
            table.add_row(
                suite.iana_name,
                suite.openssl_name,
                suite.key_exchange,
                suite.authentication,
                suite.encryption,
                suite.integrity,
            )
        console.print(table)


def _profile_json(profile: SecurityProfile) -> dict[str, object]:
    return {
        "name": profile.name,
        "annex": profile.annex,
        "retired": profile.retired,
        "versions": [v.display_name for v in profile.versions],
        "suites": [
            lookup_cipher(s).iana_name for s in (*profile.tls13_suites, *profile.tls12_suites)
        ],
    }

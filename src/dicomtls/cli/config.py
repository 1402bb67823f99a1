"""The settings of ``dicomtls serve``: one table for command-line options and ``--config`` keys.

Each :class:`Setting` is one row: its TOML key (``max_per_peer``), hence its option
(``--max-per-peer``), its kind, default and help. ``serve`` takes its options from
:data:`SERVE` and reads the configuration file through it, so every option has a key
and every key an option, and a value comes from the command line, else the file, else
the default (:func:`resolve`). A key the table does not know is refused with the
nearest one it does; a value of the wrong type names its key and its file. Adding a
setting is adding a row here (and using it in ``serve``). The access rules are the one
exception: a table of rules, ``[access]``, read by :mod:`dicomtls.node.policy`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from dicomtls.cli.errors import UserError

__all__ = [
    "SERVE",
    "TLS",
    "ConfigError",
    "Resolved",
    "Setting",
    "options",
    "read_file",
    "resolve",
    "toml_value",
]

#: The key of the one table that is not a setting.
ACCESS = "access"


class ConfigError(UserError):
    """A setting that cannot be used: names the key and where it came from (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, code="CONFIG")


# -- kinds of value --------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How one kind of value is read: a click type for the command line, and ``check``,
    which turns what a TOML file holds into the value (ValueError: what to give instead)."""

    click_type: click.ParamType[Any]
    check: Callable[[object], object]
    shown: Callable[[object], str] | None = None
    """How a message quotes a file's value, when not as TOML writes it."""


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("give a string (in double quotes)")
    return value


def _ae_title(value: object) -> str:
    """Checked when read: a title no peer can call must not wait for the first association."""
    from dicomtls.ul._wire import is_ae_title

    text = _text(value)
    if not is_ae_title(text):
        raise ValueError("give 1 to 16 printable ASCII characters, no backslash (a DICOM AE title)")
    return text


def ae_title_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A client's AE title option (its ``callback``), checked before connecting: the wire
    check came after the handshake, as an error (exit 1) that named no option."""
    try:
        return _ae_title(value)
    except ValueError as exc:
        raise click.BadParameter(f"'{value}': {exc}", ctx, param) from None


def ae_option(flag: str, help: str, **settings: Any) -> Callable[[Callable[..., Any]], Any]:
    """A command's AE title option (``--ae-title``, ``--called-ae``, ``--dest``): shown as
    AE and checked by :func:`ae_title_option`; ``settings`` as click takes them."""
    return click.option(
        flag, metavar="AE", callback=ae_title_option, help=help, show_default=True, **settings
    )


def _whole(low: int, high: int | None = None) -> Callable[[object], object]:
    expected = "give a whole number " + (
        f"from {low} to {high}" if high is not None else f">= {low}"
    )

    def check(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(expected)
        if value < low or (high is not None and value > high):
            raise ValueError(expected)
        return value

    return check


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("give a number of seconds > 0")
    return float(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("give true or false")
    return value


def _path(value: object) -> Path:
    return value if isinstance(value, Path) else Path(_text(value))


def _choice(*values: str) -> Kind:
    def check(value: object) -> str:
        if value not in values:
            raise ValueError(f"give one of {', '.join(repr(v) for v in values)}")
        return str(value)

    return Kind(click.Choice(values), check)


def _verify(value: object) -> str:
    from dicomtls.tls.flags import parse_verify_flags

    parse_verify_flags(_text(value))
    return str(value)


def _profile(value: object) -> str:
    from dicomtls.tls.profiles import PROFILES

    if value not in PROFILES:
        raise ValueError(f"give one of {', '.join(PROFILES)}")
    return str(value)


def _file_mode(value: object) -> str:
    from dicomtls.node.storage import parse_file_mode

    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError('give it in octal, e.g. "0640"')
    return f"{parse_file_mode(value):04o}"


def _floor(value: object) -> str:
    """Free space to keep: a size ("1GiB", bytes as a TOML integer, 0 for none) or "5%"."""
    from dicomtls.node.room import parse_floor

    expected = 'give a size or a share of the disk, e.g. "1GiB", "500MB", 0 (none) or "5%"'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(expected)
    try:
        parse_floor(value)
    except ValueError:
        raise ValueError(expected) from None
    return str(value)


def _octal(value: object) -> str:
    """A mode as a TOML file may write it: an octal integer (0o640) or a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0o{value:o}"
    return toml_value(value)


def _destination(value: object) -> str:
    text = _text(value)
    ae, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not ae.strip() or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("give AE=HOST:PORT, e.g. VIEWER=10.0.0.5:2762")
    return text


def _url(*schemes: str, example: str) -> Callable[[object], object]:
    def check(value: object) -> str:
        text = _text(value)
        if not text.startswith(schemes):
            raise ValueError(f"give {example}")
        return text

    return check


def _network(value: object) -> str:
    import ipaddress

    text = _text(value)
    try:
        ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise ValueError(
            "give a network, e.g. 10.0.0.5/32 (no host bits past the prefix)"
        ) from None
    return text


def _audit(value: object) -> str:
    """The sink's scheme; the rest is read (and its files opened) when the node starts."""
    text = _text(value)
    scheme, sep, _ = text.partition(":")
    if scheme.lower() not in ("file", "udp", "tls") or not sep:
        raise ValueError(
            f"unknown scheme {scheme!r}: give file:PATH, udp://HOST:514 or tls://HOST:6514?ca=CA.pem"
        )
    return text


TEXT = Kind(click.STRING, _text)
AE_TITLE = Kind(click.STRING, _ae_title)
PORT = Kind(click.IntRange(0, 65535), _whole(0, 65535))
COUNT = Kind(click.IntRange(1), _whole(1))
SECONDS = Kind(click.FloatRange(0, min_open=True), _seconds)
FLAG = Kind(click.BOOL, _flag)
FILE = Kind(click.Path(exists=True, dir_okay=False, path_type=Path), _path)
"""A file that must be there (the command line checks at once, a config file at start)."""
NEW_FILE = Kind(click.Path(dir_okay=False, path_type=Path), _path)
FOLDER = Kind(click.Path(file_okay=False, path_type=Path), _path)


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: a TOML key and the option that goes with it."""

    key: str
    kind: Kind
    default: object
    help: str
    default_text: str | None = None
    """The default as ``--help`` says it, when not simply ``default``."""
    many: bool = False
    """Repeatable on the command line, an array in the file; the command line replaces it."""
    flag: bool = False
    option: str = ""
    """The option's name when it is not the key's (``--move-destination`` for a list)."""
    metavar: str | None = None
    envvar: str | None = None
    secret: bool = False
    """Never shown by ``--print-config``."""

    @property
    def name(self) -> str:
        return self.option or "--" + self.key.replace("_", "-")

    def click_option(self) -> Callable[[Any], Any]:
        default = self.default_text or (None if self.default in (None, ()) else str(self.default))
        suffix = f" [default: {default}]" if default and not self.flag else ""
        if self.flag:
            return click.option(
                self.name, self.key, is_flag=True, default=None, help=self.help + suffix
            )
        return click.option(
            self.name,
            self.key,
            type=self.kind.click_type,
            multiple=self.many,
            default=None,
            metavar=self.metavar,
            envvar=self.envvar,
            help=self.help + suffix,
        )


#: The library's own defaults (``net.scp.Limits``, ``TLSSettings.handshake_timeout``), spelt
#: out so that a command's ``--help`` does not load the network stack to learn five numbers;
#: tests/cli/test_config.py holds them to the library's.
DEFAULT_LIMITS = {
    "max_associations": 100,
    "max_per_peer": 20,
    "artim_timeout": 30.0,
    "idle_timeout": 300.0,
    "shutdown_grace": 30.0,
}
DEFAULT_HANDSHAKE_TIMEOUT = 30.0

TLS: tuple[Setting, ...] = (
    Setting(
        "tls_cert",
        FILE,
        None,
        "Our certificate chain (PEM: leaf first), DER or PKCS#12.",
        default_text="serve: the first-run PKI under --store; clients: ./dicom-store/pki",
    ),
    Setting("tls_key", FILE, None, "Our private key (PEM or DER), if not inside --tls-cert."),
    Setting(
        "key_password",
        TEXT,
        None,
        "Password of an encrypted key (or env DICOMTLS_KEY_PASSWORD).",
        envvar="DICOMTLS_KEY_PASSWORD",
        secret=True,
    ),
    Setting(
        "ca",
        FILE,
        (),
        "Trusted CA certificates (repeatable).",
        many=True,
        default_text="./dicom-store/pki/ca.pem when there",
    ),
    Setting("crl", FILE, (), "Certificate revocation lists (repeatable).", many=True),
    Setting(
        "verify",
        Kind(click.STRING, _verify),
        "peer,fail-if-no-peer-cert",
        "Comma list of peer, fail-if-no-peer-cert, client-once, or none.",
    ),
    Setting(
        "profile",
        Kind(click.STRING, _profile),
        "bcp195-rfc8996",
        "DICOM PS3.15 TLS profile (dicomtls ciphers lists them).",
    ),
    Setting(
        "check_hostname",
        FLAG,
        False,
        "Client: require the server certificate to name the host.",
        flag=True,
    ),
    Setting("no_tls", FLAG, False, "Plain TCP: an explicit, warned opt-out.", flag=True),
)
"""The TLS settings every command takes (clients as options, ``serve`` as keys too)."""

SERVE: tuple[Setting, ...] = (
    Setting("store", FOLDER, Path("dicom-store"), "Where received objects and the index live."),
    Setting("host", TEXT, "0.0.0.0", "Address to listen on."),
    Setting("port", PORT, 2762, "Listening port."),
    Setting("ae_title", AE_TITLE, "DICOMTLS", "Our AE title."),
    Setting(
        "accept_any_called_ae",
        FLAG,
        False,
        "Answer associations whatever AE title they "
        "call (as DCMTK's storescp does), not only --ae-title.",
        flag=True,
    ),
    Setting(
        "max_associations", COUNT, DEFAULT_LIMITS["max_associations"], "Concurrent associations."
    ),
    Setting(
        "max_per_peer",
        COUNT,
        DEFAULT_LIMITS["max_per_peer"],
        "Concurrent associations from one IP address (raise it for a gateway or NAT).",
    ),
    Setting(
        "max_pending_handshakes",
        COUNT,
        None,
        "TLS handshakes in progress at once; more connections are closed at once.",
        default_text="512, or --max-associations if larger",
    ),
    Setting(
        "max_pending_per_peer",
        COUNT,
        None,
        "TLS handshakes in progress from one IP address (IPv6: one /64).",
        default_text="32, or --max-per-peer if larger",
    ),
    Setting(
        "move_destinations",
        Kind(click.STRING, _destination),
        (),
        "AE=HOST:PORT where C-MOVE may send (repeatable).",
        many=True,
        option="--move-destination",
        metavar="AE=HOST:PORT",
    ),
    Setting(
        "fsync",
        _choice("always", "never"),
        "always",
        "'never' relaxes durability for benchmarks: Success before data is on disk.",
    ),
    Setting("explain", FLAG, False, "Print each verify-callback call as it happens.", flag=True),
    Setting(
        "audit",
        Kind(click.STRING, _audit),
        (),
        "Send audit messages (PS3.15 A.5) to "
        "file:PATH, udp://HOST:514 or tls://HOST:6514?ca=CA.pem&cert=C.pem&key=C.key "
        "(repeatable).",
        many=True,
        metavar="SPEC",
    ),
    Setting(
        "metrics_port",
        PORT,
        None,
        "Serve Prometheus metrics on this port (on --metrics-host).",
        default_text="off",
    ),
    Setting("metrics_host", TEXT, "127.0.0.1", "Address for --metrics-port."),
    Setting(
        "handshake_timeout",
        SECONDS,
        DEFAULT_HANDSHAKE_TIMEOUT,
        "Close a connection whose TLS handshake is not complete this long after it was accepted.",
        metavar="SECONDS",
    ),
    Setting(
        "artim_timeout",
        SECONDS,
        DEFAULT_LIMITS["artim_timeout"],
        "Close a connection whose "
        "A-ASSOCIATE-RQ is not complete this long after the link is up (and after a release "
        "or rejection).",
        metavar="SECONDS",
    ),
    Setting(
        "idle_timeout",
        SECONDS,
        DEFAULT_LIMITS["idle_timeout"],
        "Abort an association that completes no PDU for this long.",
        metavar="SECONDS",
    ),
    Setting(
        "shutdown_grace",
        SECONDS,
        DEFAULT_LIMITS["shutdown_grace"],
        "On Ctrl-C or SIGTERM, how long running transfers may take to finish.",
        metavar="SECONDS",
    ),
    Setting(
        "file_mode",
        Kind(click.STRING, _file_mode, _octal),
        "0600",
        "Mode of stored objects, index "
        "and audit file: 0600, or 0640 to let the node's group read (folders 0700/0750); "
        "never wider.",
        metavar="MODE",
    ),
    Setting(
        "min_free_space",
        Kind(click.STRING, _floor),
        None,
        "Free space the store's disk keeps for the index and audit trail: a C-STORE that "
        'would go below it is refused (A700H). A size ("1GiB", "500MB", 0: none) or a share '
        '("5%").',
        metavar="SIZE",
        default_text="1GiB or 5% of the disk, whichever is smaller",
    ),
    # -- several nodes (docs/scale-out.md) --
    Setting(
        "index",
        Kind(
            click.STRING, _url("postgresql://", "postgres://", example="postgresql://USER@HOST/DB")
        ),
        None,
        "Keep the index in PostgreSQL, shared by several nodes.",
        metavar="URL",
        default_text="SQLite in the store",
    ),
    Setting(
        "objects",
        Kind(click.STRING, _url("s3://", example="s3://BUCKET?endpoint=URL")),
        None,
        "Keep objects in S3 (needs --index; credentials from the environment as AWS tools "
        "read them).",
        metavar="URL",
        default_text="the store",
    ),
    Setting(
        "proxy_protocol",
        FLAG,
        False,
        "Behind a TCP balancer: every connection starts with "
        "a PROXY v2 header from --trusted-proxy, naming the client.",
        flag=True,
    ),
    Setting(
        "trusted_proxies",
        Kind(click.STRING, _network),
        (),
        "A balancer network allowed to send PROXY headers (repeatable).",
        many=True,
        option="--trusted-proxy",
        metavar="CIDR",
    ),
    Setting(
        "proxy_header_timeout",
        SECONDS,
        5.0,
        "Close a balancer's connection whose PROXY "
        "header is not complete this long after it was accepted.",
        metavar="SECONDS",
    ),
    Setting(
        "drain_seconds",
        SECONDS,
        None,
        "On SIGTERM, answer /healthz 503 this long before "
        "stopping, so a balancer moves new clients elsewhere (SIGUSR1: drain only).",
        metavar="SECONDS",
        default_text="0",
    ),
    Setting(
        "janitor_interval",
        SECONDS,
        600.0,
        "With --objects: how often this node offers to "
        "remove uploads no index row names (one node at a time).",
        metavar="SECONDS",
    ),
    Setting(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "info",
        "What the node logs: info is one line per association and every warning.",
    ),
    Setting(
        "log_file",
        NEW_FILE,
        None,
        "Append log lines to this file instead of stderr.",
        default_text="stderr",
    ),
    *TLS,
)
"""Every setting of ``dicomtls serve``, in the order ``--print-config`` shows them."""


def options(settings: Iterable[Setting]) -> Callable[[Any], Any]:
    """A decorator adding one option per setting."""
    made = [s.click_option() for s in settings]

    def decorate(function: Any) -> Any:
        for option in reversed(made):
            function = option(function)
        return function

    return decorate


# -- reading -----------------------------------------------------------------------------------


def read_file(path: Path | None) -> dict[str, Any]:
    """The TOML file's table ({} without one); a syntax error names the file and the line."""
    if path is None:
        return {}
    import tomllib  # only serve --config reads a file

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", "fix the line it names") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None


@dataclass
class Resolved:
    """The effective settings: each value and where it came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    """key -> ``default``, the option (``--port``), or the file's name."""
    access: Mapping[str, Any] | None = None
    file: Path | None = None
    settings: tuple[Setting, ...] = field(default=SERVE, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def from_file(self, key: str) -> bool:
        return self.file is not None and self.sources.get(key) == str(self.file)

    def named(self, key: str) -> str:
        """How to name the setting ``key`` to whoever set it: the option, or key and file."""
        if self.from_file(key):
            return f"{key} in {self.file}"
        setting = next(s for s in self.settings if s.key == key)
        return setting.name

    def to_toml(self) -> str:
        """The effective configuration as a TOML file ``--config`` reads back as it is."""
        origin = "the command line, then " + (str(self.file) if self.file else "no --config file")
        lines = [f"# dicomtls serve: the effective configuration ({origin}, then the defaults)"]
        rows = [_toml_row(s, self.values[s.key], self.sources[s.key]) for s in self.settings]
        width = min(60, max(len(text) for text, _ in rows))
        lines += [f"{text:<{width}}  # {note}" for text, note in rows]
        if self.access is None:
            lines.append(
                "# [access]: none, the default policy (every AE title, the default services)"
            )
        else:
            lines += ["", *_toml_tables(ACCESS, self.access)]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        shown = {s.key: _jsonable(self.values[s.key]) for s in self.settings if not s.secret}
        shown[ACCESS] = self.access
        return json.dumps({"config": shown, "sources": self.sources, "file": _jsonable(self.file)})


def _toml_row(setting: Setting, value: object, source: str) -> tuple[str, str]:
    """One setting's line of ``--print-config`` and its comment: where the value came from."""
    if setting.secret:
        note = "set" if value is not None else "not set"
        return f"# {setting.key} = ...", f"{note} ({source}); never shown"
    if value is None or value == ():
        said = f"default: {setting.default_text}" if setting.default_text else "not set"
        return f"# {setting.key} =", said if source == "default" else f"not set ({source})"
    return f"{setting.key} = {toml_value(value)}", source + _missing(setting, value)


def _missing(setting: Setting, value: object) -> str:
    """A note for a file the configuration names and this folder does not have."""
    if setting.kind is not FILE:
        return ""
    paths = value if isinstance(value, tuple) else (value,)
    absent = [str(p) for p in paths if isinstance(p, Path) and not p.exists()]
    return f"; not found here: {', '.join(absent)}" if absent else ""


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def resolve(
    ctx: click.Context,
    given: Mapping[str, Any],
    file: Path | None,
    settings: tuple[Setting, ...] = SERVE,
    *,
    check_files: bool = True,
) -> Resolved:
    """Each setting from the command line, else ``file``, else its default; checked.

    ``check_files``: a file a setting names must exist (not for ``--print-config``,
    which notes the missing ones instead).
    """
    table = read_file(file)
    _check_keys(table, {s.key for s in settings}, file)
    access = table.get(ACCESS)
    if access is not None and not isinstance(access, dict):
        raise ConfigError(f"{file}: access must be a table ([access])")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in settings:
        value, source = _one(ctx, setting, given.get(setting.key), table, file)
        if check_files and setting.kind is FILE and source == str(file):
            _check_files_exist(setting, value, file)
        values[setting.key], sources[setting.key] = value, source
    return Resolved(values, sources, access, file, settings)


def _check_keys(table: Mapping[str, Any], known: set[str], file: Path | None) -> None:
    """Refuse a key the table does not know, with the nearest one it does."""
    for key in table:
        if key in known or key == ACCESS:
            continue
        near = difflib.get_close_matches(key, [*known, ACCESS], n=1, cutoff=0.6)
        hint = (
            f"did you mean {near[0]!r}?"
            if near
            else "dicomtls serve --help lists every key (--max-per-peer: max_per_peer)"
        )
        raise ConfigError(f"{file}: unknown key {key!r}", hint)


def _check_files_exist(setting: Setting, value: Any, file: Path | None) -> None:
    """The files a configuration file names, read from the folder ``serve`` runs in."""
    for path in value if setting.many else (value,):
        if not path.is_file():
            raise ConfigError(
                f"{file}: {setting.key} = {str(path)!r}: file not found",
                "give the path from the folder serve runs in, or an absolute one",
            )


def _one(
    ctx: click.Context,
    setting: Setting,
    given: object,
    table: Mapping[str, Any],
    file: Path | None,
) -> tuple[Any, str]:
    """One setting's value and its source: the command line, else the file, else the default."""
    source = ctx.get_parameter_source(setting.key)
    typed = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    if typed and given is not None and given != ():
        return _from_command_line(setting, given), setting.name
    if setting.key in table:
        return _from_file(setting, table[setting.key], file), str(file)
    return setting.default, "default"


def _from_command_line(setting: Setting, given: object) -> Any:
    values = given if isinstance(given, tuple) else (given,)
    checked = []
    for value in values:
        try:
            checked.append(setting.kind.check(value))
        except ValueError as exc:
            raise ConfigError(f"{setting.name} {value}: {exc}") from None
    return tuple(checked) if setting.many else checked[0]


def _from_file(setting: Setting, raw: object, file: Path | None) -> Any:
    try:
        if not setting.many:
            return setting.kind.check(raw)
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise ValueError('give an array of strings, e.g. ["a", "b"]')
        return tuple(setting.kind.check(v) for v in items)
    except ValueError as exc:
        quoted = (setting.kind.shown or toml_value)(raw)
        raise ConfigError(f"{file}: {setting.key} = {quoted}: {exc}") from None


# -- writing TOML ------------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """``value`` as TOML writes it (strings as basic strings, JSON's escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key)


def _toml_tables(name: str, table: Mapping[str, Any]) -> list[str]:
    """``[name]`` with its plain values, then its arrays of tables as ``[[name.key]]``."""
    lines = [f"[{name}]"]
    arrays = {}
    for key, value in table.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays[key] = value
        else:
            lines.append(f"{_key(key)} = {toml_value(value)}")
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{name}.{_key(key)}]]"]
            lines += [f"{_key(k)} = {toml_value(v)}" for k, v in item.items()]
    return lines

"""A small S3 client: the six calls an object store needs, signed with AWS Signature V4.

Why not boto3 or aiobotocore: the node needs PUT (with a checksum the server verifies),
ranged GET, HEAD, DELETE, a listing for the janitor, and bucket creation for tests. boto3
brings botocore, s3transfer and jmespath (about 25 MB, 0.3 s to import, a millisecond of
event hooks per call) and aiobotocore adds aiohttp and pins botocore's exact version; the
node calls S3 from worker threads anyway (like its fsyncs), so an asynchronous client buys
nothing. SigV4 is a short, fully specified algorithm, checked here against a real server
(SeaweedFS) in the tests. One dependency: urllib3, for connection pooling and timeouts.

Credentials are found as AWS tools find them, in this order: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) in the environment, then the shared
credentials file (``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials``) under
``AWS_PROFILE`` (else ``default``). The region: ``AWS_REGION``, ``AWS_DEFAULT_REGION``,
the profile's ``region`` in ``~/.aws/config``, else ``us-east-1``. Instance roles (IMDS),
SSO and web identity are not read: give such credentials through the environment.
"""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import hashlib
import hmac
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree

from dicomtls.errors import DicomTLSError

__all__ = ["Credentials", "S3Client", "S3Error", "find_credentials"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(DicomTLSError, OSError):
    """An S3 call failed: the status, the server's error code and message, and what was asked."""

    def __init__(self, what: str, status: int = 0, code: str = "", message: str = "") -> None:
        self.status, self.code = status, code
        detail = f"HTTP {status} {code}: {message}".strip(": ") if status else message
        super().__init__(f"S3 {what}: {detail}")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = ""
    session_token: str | None = None
    region: str = "us-east-1"

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"Credentials(access_key={self.access_key!r}, region={self.region!r})"


def _aws_file(env: Mapping[str, str], variable: str, default: str) -> Path:
    return Path(env.get(variable) or Path.home() / ".aws" / default)


def find_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials and region AWS tools would use here (see the module's docstring)."""
    env = os.environ if environ is None else environ
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    region = _region(env, profile)
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(
            env["AWS_ACCESS_KEY_ID"],
            env["AWS_SECRET_ACCESS_KEY"],
            env.get("AWS_SESSION_TOKEN"),
            region,
        )
    shared = configparser.ConfigParser()
    shared.read([_aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")])
    if shared.has_option(profile, "aws_access_key_id"):
        return Credentials(
            shared.get(profile, "aws_access_key_id"),
            shared.get(profile, "aws_secret_access_key", fallback=""),
            shared.get(profile, "aws_session_token", fallback=None),
            region,
        )
    raise S3Error(
        "credentials",
        message="none found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in "
        "~/.aws/credentials (AWS_PROFILE)",
    )


def _region(env: Mapping[str, str], profile: str) -> str:
    """The environment's region, else the profile's in ``~/.aws/config``, else us-east-1."""
    config = configparser.ConfigParser()
    config.read([_aws_file(env, "AWS_CONFIG_FILE", "config")])
    section = "default" if profile == "default" else f"profile {profile}"
    return (
        env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or config.get(section, "region", fallback="")
        or "us-east-1"
    )


def _quote(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text, safe=_UNRESERVED + safe)


def _canonical_query(query: Mapping[str, str]) -> str:
    """SigV4's query string: each name and value quoted, sorted by name."""
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    credentials: Credentials,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """``headers`` with the SigV4 ``Authorization`` and the headers it signs (AWS's
    "Signature Version 4 signing process": canonical request, string to sign, derived key)."""
    now = now or dt.datetime.now(dt.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            _quote(path, "/"),
            _canonical_query(query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{day}/{credentials.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + credentials.secret_key).encode(), day)
    for part in (credentials.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    signed.pop("host")  # urllib3 sends it
    return signed


def _error(what: str, response: Any) -> S3Error:
    body = response.data if response.data is not None else b""
    code = message = ""
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or ""
        message = root.findtext("Message") or ""
    except ElementTree.ParseError:
        message = body[:200].decode("utf-8", "replace")
    return S3Error(what, response.status, code, message)


def _target(path: str, query: Mapping[str, str]) -> str:
    """The request's path and query string, quoted as they were signed."""
    return _quote(path, "/") + ("?" + _canonical_query(query) if query else "")


def _refused(what: str, response: Any, streamed: bool) -> S3Error:
    """The error of an answer not expected, its connection back in the pool."""
    if streamed:
        response.read()
        response.release_conn()
    return _error(what, response)


class S3Client:
    """Path-style requests to one endpoint (``http://host:port`` or ``https://...``).

    Thread-safe: a urllib3 pool of ``connections`` keeps connections open between calls.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connections: int = 32,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        try:
            import urllib3
        except ImportError as exc:
            raise S3Error(
                "client", message="objects in S3 need urllib3: pip install 'dicomtls[scale]'"
            ) from exc
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise S3Error("endpoint", message=f"{endpoint!r} is not an http(s):// URL")
        self.endpoint = f"{parsed.scheme}://{parsed.netloc}"
        self.host = parsed.netloc
        self.credentials = credentials
        self.retries = retries
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=connections,
            block=False,
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            retries=False,
        )

    def close(self) -> None:
        self._http.clear()

    def _request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: IO[bytes] | bytes | None = None,
        payload_sha256: str = _EMPTY_SHA256,
        stream: bool = False,
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        path = f"/{bucket}/{key}" if key else f"/{bucket}"
        query = dict(query or {})
        what = f"{method} {path}"
        url = self.endpoint + _target(path, query)
        last: Exception | None = None
        for attempt in range(self.retries):
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            signed = sign(
                self.credentials,
                method,
                self.host,
                path,
                query,
                dict(headers or {}),
                payload_sha256,
            )
            try:
                response = self._http.request(
                    method,
                    url,
                    headers=signed,
                    body=body,
                    preload_content=not stream,
                    redirect=False,
                )
            except Exception as exc:  # urllib3's errors: connection refused, reset, timeout
                last = exc
                continue
            if response.status in expect:
                return response
            last = _refused(what, response, stream)
            if response.status < 500 or attempt + 1 == self.retries:
                raise last  # only a server's own trouble (5xx) is worth another try
        raise S3Error(what, message=f"no answer after {self.retries} tries: {last}")

    # -- the calls ----------------------------------------------------------------------

    def put(self, bucket: str, key: str, body: IO[bytes], size: int, sha256: bytes) -> None:
        """Upload ``size`` bytes whose SHA-256 is ``sha256``; returns only once the server
        answered 200 and said it verified that checksum (``x-amz-checksum-sha256``): a body
        damaged on the way is refused (BadDigest), never stored."""
        checksum = base64.b64encode(sha256).decode()
        headers = {
            "content-length": str(size),
            "content-type": "application/dicom",
            "x-amz-checksum-sha256": checksum,
        }
        response = self._request(
            "PUT", bucket, key, headers=headers, body=body, payload_sha256=sha256.hex()
        )
        echoed = response.headers.get("x-amz-checksum-sha256")
        if echoed != checksum:
            raise S3Error(
                f"PUT /{bucket}/{key}",
                response.status,
                "ChecksumNotConfirmed",
                f"the server did not confirm the SHA-256 checksum (sent {checksum}, got {echoed})",
            )

    def get(
        self, bucket: str, key: str, start: int = 0, end: int | None = None
    ) -> tuple[bytes, int]:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end) and the object's size."""
        last = "" if end is None else str(end - 1)
        response = self._request(
            "GET", bucket, key, headers={"range": f"bytes={start}-{last}"}, expect=(200, 206)
        )
        total = len(response.data)
        content_range = response.headers.get("content-range", "")
        if "/" in content_range:
            total = int(content_range.rsplit("/", 1)[1])
        return bytes(response.data), total

    def head(self, bucket: str, key: str) -> dict[str, str] | None:
        """The object's headers (content-length, checksums), or None if there is none."""
        try:
            response = self._request(
                "HEAD", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"}, expect=(200,)
            )
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        return {k.lower(): v for k, v in response.headers.items()}

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; one that is not there is not an error (S3 answers 204 either way)."""
        self._request("DELETE", bucket, key, expect=(200, 204, 404))

    def list(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every (key, size) under ``prefix``, a page of up to 1,000 at a time."""
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ElementTree.fromstring(self._request("GET", bucket, query=query).data)
            for item in root.iter(f"{_NS}Contents"):
                yield item.findtext(f"{_NS}Key") or "", int(item.findtext(f"{_NS}Size") or 0)
            token = root.findtext(f"{_NS}NextContinuationToken") or ""
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return

    def check(self, bucket: str) -> None:
        """Raise unless the bucket answers (HEAD bucket): the node's health check."""
        self._request("HEAD", bucket, expect=(200,))

    def create_bucket(self, bucket: str) -> None:
        self._request("PUT", bucket, expect=(200, 409))

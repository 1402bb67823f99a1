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
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from dicomtls.errors import DicomTLSError
from dicomtls.node.s3_xml import S3XmlError, S3XmlReader

__all__ = ["Credentials", "S3Client", "S3Error", "find_credentials"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"
MAX_PAGE = 8 << 20
"""A listing page: 1,000 keys of up to 1,024 bytes, XML-escaped, and their details."""
MAX_ERROR = 64 << 10
"""An error answer (S3's are a few hundred bytes), or the body of a PUT, HEAD or DELETE."""
_CHUNK = 64 << 10
MIN_UPLOAD_RATE = 64 << 10
"""Bytes a second a server must take a PUT body at, over any stretch as long as the client's
timeout (curl's low-speed limit): 4 minutes for a 16 MiB object at worst."""


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


def _error(what: str, status: int, body: bytes) -> S3Error:
    """The error an answer ``status`` with ``body`` (S3's ``<Error>``, or anything) stands for."""
    reader = S3XmlReader(("Code", "Message"))
    try:
        reader.feed(body, final=True)
    except S3XmlError:
        return S3Error(what, status, message=body[:200].decode("utf-8", "replace"))
    return S3Error(what, status, reader.fields.get("Code", ""), reader.fields.get("Message", ""))


def _target(path: str, query: Mapping[str, str]) -> str:
    """The request's path and query string, quoted as they were signed."""
    return _quote(path, "/") + ("?" + _canonical_query(query) if query else "")


class S3Client:
    """Path-style requests to one endpoint (``http://host:port`` or ``https://...``).

    Thread-safe: a urllib3 pool of ``connections`` keeps connections open between calls.
    ``timeout`` bounds each wait on the server (connecting, each send and read, a whole
    answer's body) and the tries: a failed try is repeated only while less than ``timeout``
    has passed since the call began, so an endpoint that hangs holds a call (and the C-STORE
    behind it) for one timeout, not one per try.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connections: int = 32,
        timeout: float = 30.0,
        retries: int = 3,
        min_upload_rate: int = MIN_UPLOAD_RATE,
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
        self.timeout = timeout
        self.min_upload_rate = min_upload_rate
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
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        """The answer, its body still to be read with :meth:`_body` (bounded)."""
        path = f"/{bucket}/{key}" if key else f"/{bucket}"
        query = dict(query or {})
        what = f"{method} {path}"
        url = self.endpoint + _target(path, query)
        last: Exception | None = None
        give_up = time.monotonic() + self.timeout
        limited = self._limited(what, body)
        sent = body if limited is None else cast(IO[bytes], limited)  # urllib3 calls read()
        tries = 0
        while self._may_try(tries, give_up):
            tries += 1
            if limited is not None:
                limited.rewind()
            response = self._send(method, url, path, query, headers, sent, payload_sha256)
            if isinstance(response, Exception):
                last = response
                continue
            if response.status in expect:
                return response
            last = _error(what, response.status, self._body(what, response, MAX_ERROR))
            if response.status < 500:
                raise last  # only a server's own trouble (5xx) is worth another try
        if isinstance(last, S3Error):
            raise last
        raise S3Error(what, message=f"no answer after {_tries(tries)}: {last}")

    def _may_try(self, tries: int, give_up: float) -> bool:
        """Another try: the first always, the others while the client's timeout has not
        passed since the call began."""
        return tries < self.retries and (tries == 0 or time.monotonic() < give_up)

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str] | None,
        body: IO[bytes] | bytes | None,
        payload_sha256: str,
    ) -> Any:
        """One try: the answer, or what stopped it (refused, reset, timed out, too slow)."""
        signed = sign(
            self.credentials, method, self.host, path, query, dict(headers or {}), payload_sha256
        )
        try:
            return self._http.request(
                method,
                url,
                headers=signed,
                body=body,
                preload_content=False,  # read by _body, bounded
                redirect=False,
            )
        except Exception as exc:  # urllib3's errors: connection refused, reset, timeout
            return _unwrapped(exc)

    def _limited(self, what: str, body: IO[bytes] | bytes | None) -> _LowSpeedLimit | None:
        """A file body under the low-speed limit; bytes go as they are."""
        if body is None or isinstance(body, bytes):
            return None
        return _LowSpeedLimit(what, body, self.min_upload_rate, self.timeout)

    def _body(self, what: str, response: Any, limit: int) -> bytes:
        """The answer's body: at most ``limit`` bytes, all read within the client's timeout
        (a server trickling a byte at a time never times out a single read), exactly as
        sent (never decompressed: we ask for no encoding). Past a bound the connection is
        dropped and the call fails."""
        deadline = time.monotonic() + self.timeout
        parts: list[bytes] = []
        size = 0
        try:
            while chunk := response.read1(_CHUNK, decode_content=False):
                size += len(chunk)
                if size > limit:
                    raise S3Error(
                        what, response.status, "AnswerTooLong", f"more than {limit:,} bytes"
                    )
                if time.monotonic() > deadline:
                    raise S3Error(
                        what,
                        response.status,
                        "AnswerTooSlow",
                        f"not sent within {self.timeout:g} s",
                    )
                parts.append(chunk)
        except S3Error:
            response.close()  # the rest unread: the connection cannot be used again
            raise
        except Exception as exc:  # urllib3's: cut off, a read timed out, a wrong length
            response.close()
            raise S3Error(what, response.status, message=f"answer cut off: {exc}") from exc
        finally:
            response.release_conn()
        return b"".join(parts)

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
        self._body(f"PUT /{bucket}/{key}", response, MAX_ERROR)
        echoed = response.headers.get("x-amz-checksum-sha256")
        if echoed != checksum:
            raise S3Error(
                f"PUT /{bucket}/{key}",
                response.status,
                "ChecksumNotConfirmed",
                f"the server did not confirm the SHA-256 checksum (sent {checksum}, got {echoed})",
            )

    def get(self, bucket: str, key: str, start: int, end: int) -> tuple[bytes, int]:
        """Bytes ``start`` to ``end`` (exclusive) and the object's size. A server sending
        more than that (a Range ignored, a body without end) is cut off: S3Error."""
        response = self._request(
            "GET", bucket, key, headers={"range": f"bytes={start}-{end - 1}"}, expect=(200, 206)
        )
        data = self._body(f"GET /{bucket}/{key}", response, end - start)
        total = len(data)
        content_range = response.headers.get("content-range", "")
        if "/" in content_range:
            try:
                total = int(content_range.rsplit("/", 1)[1])
            except ValueError:
                raise S3Error(
                    f"GET /{bucket}/{key}",
                    response.status,
                    message=f"Content-Range {content_range!r}",
                ) from None
        return data, total

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
        self._body(f"HEAD /{bucket}/{key}", response, MAX_ERROR)
        return {k.lower(): v for k, v in response.headers.items()}

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; one that is not there is not an error (S3 answers 204 either way)."""
        response = self._request("DELETE", bucket, key, expect=(200, 204, 404))
        self._body(f"DELETE /{bucket}/{key}", response, MAX_ERROR)

    def list(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every (key, size) under ``prefix``, a page of up to 1,000 at a time."""
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            page = self._page(bucket, query)
            yield from _listed(f"GET /{bucket}", page)
            following = page.fields.get("NextContinuationToken", "")
            if page.fields.get("IsTruncated") != "true" or not following:
                return
            if following == token:  # a server sending one page for ever
                raise S3Error(f"GET /{bucket}", 200, message="the same continuation token again")
            token = following

    def _page(self, bucket: str, query: Mapping[str, str]) -> S3XmlReader:
        """One ListObjectsV2 page, read and parsed within its bounds."""
        what = f"GET /{bucket}"
        page = S3XmlReader(("NextContinuationToken", "IsTruncated"), "Contents", ("Key", "Size"))
        try:
            page.feed(self._body(what, self._request("GET", bucket, query=query), MAX_PAGE), True)
        except S3XmlError as exc:
            raise S3Error(what, 200, "MalformedAnswer", str(exc)) from None
        return page

    def check(self, bucket: str) -> None:
        """Raise unless the bucket answers (HEAD bucket): the node's health check."""
        self._body(f"HEAD /{bucket}", self._request("HEAD", bucket, expect=(200,)), MAX_ERROR)

    def create_bucket(self, bucket: str) -> None:
        response = self._request("PUT", bucket, expect=(200, 409))
        self._body(f"PUT /{bucket}", response, MAX_ERROR)


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"


def _unwrapped(exc: Exception) -> Exception:
    """Our own refusal of a slow server (:class:`_LowSpeedLimit`) as we raised it, rather
    than inside urllib3's "Connection aborted"; any other error as it is."""
    for cause in (exc.__cause__, exc.__context__, *exc.args):
        if isinstance(cause, S3Error):
            return cause
    return exc


class _LowSpeedLimit:
    """A PUT body that fails the upload once the server has taken it slower than ``rate``
    bytes a second for ``window`` seconds. The socket's timeout bounds each send, and the
    kernel's send buffer takes megabytes at once: a server reading some 20 KB/s would hold a
    call with a 60 s timeout as long as it likes."""

    def __init__(self, what: str, body: IO[bytes], rate: int, window: float) -> None:
        self._what = what
        self._body = body
        self._rate = rate
        self._window = window
        self._since: float | None = None  # from the first read: connecting is not sending
        self._taken = 0

    def rewind(self) -> None:
        """Back to the start, for another try."""
        self._body.seek(0)
        self._since, self._taken = None, 0

    def read(self, size: int = -1) -> bytes:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        elif now - self._since >= self._window:
            elapsed, taken = now - self._since, self._taken
            if taken < self._rate * elapsed:
                raise S3Error(
                    self._what,
                    code="TooSlow",
                    message=f"the server took {taken:,} bytes of the body in {elapsed:.1f} s, "
                    f"less than {self._rate >> 10:,} KiB/s",
                )
            self._since, self._taken = now, 0
        data = self._body.read(size)
        self._taken += len(data)
        return data


def _listed(what: str, page: S3XmlReader) -> Iterator[tuple[str, int]]:
    """The (key, size) entries of a listing page."""
    for entry in page.entries:
        try:
            yield entry.get("Key", ""), int(entry.get("Size") or 0)
        except ValueError:
            raise S3Error(what, 200, "MalformedAnswer", "a size that is not a number") from None

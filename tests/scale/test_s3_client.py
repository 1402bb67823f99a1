"""The S3 client against a real S3 server (SeaweedFS): signatures, checksums, ranges, listing.

The server checks every signature and the payload checksum, so a mistake in SigV4 or a
body damaged on the way fails here, as it would against AWS.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from dicomtls.node.s3 import Credentials, S3Client, S3Error, find_credentials

from ..servers import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedServer


@pytest.fixture
def client(seaweedfs: SeaweedServer) -> S3Client:
    return S3Client(seaweedfs.endpoint, Credentials(S3_ACCESS_KEY, S3_SECRET_KEY))


def _put(client: S3Client, bucket: str, key: str, body: bytes) -> None:
    client.put(bucket, key, io.BytesIO(body), len(body), hashlib.sha256(body).digest())


def test_put_get_ranges_head_list_delete(client: S3Client, seaweedfs: SeaweedServer) -> None:
    bucket = seaweedfs.new_bucket()
    body = bytes(range(256)) * 4000
    keys = ["objects/ab/1.2.3/0001.dcm", "objects/ab/1.2.3/with space+plus=&.dcm"]
    for key in keys:
        _put(client, bucket, key, body)
    data, total = client.get(bucket, keys[1], 1000, 1300)
    assert (data, total) == (body[1000:1300], len(body))
    assert client.get(bucket, keys[0], 0, len(body))[0] == body
    head = client.head(bucket, keys[0])
    assert head is not None and int(head["content-length"]) == len(body)
    assert sorted(client.list(bucket, "objects/")) == sorted((k, len(body)) for k in keys)
    client.delete(bucket, keys[0])
    assert client.head(bucket, keys[0]) is None
    client.delete(bucket, keys[0])  # deleting what is gone is no error


def test_a_body_that_does_not_match_its_checksum_is_refused_and_not_stored(
    client: S3Client, seaweedfs: SeaweedServer
) -> None:
    bucket = seaweedfs.new_bucket()
    body = b"DICM" * 10_000
    damaged = hashlib.sha256(body + b"!").digest()
    with pytest.raises(S3Error) as refused:
        client.put(bucket, "k.dcm", io.BytesIO(body), len(body), damaged)
    assert refused.value.status == 400 and "BadDigest" in str(refused.value)
    assert client.head(bucket, "k.dcm") is None


def test_a_wrong_secret_is_refused(seaweedfs: SeaweedServer) -> None:
    bucket = seaweedfs.new_bucket()
    impostor = S3Client(seaweedfs.endpoint, Credentials(S3_ACCESS_KEY, "not-the-secret"))
    with pytest.raises(S3Error) as refused:
        _put(impostor, bucket, "k.dcm", b"x")
    assert refused.value.status == 403
    assert "not-the-secret" not in str(refused.value) + repr(impostor.credentials)


def test_credentials_as_aws_tools_find_them(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu-west-3"}
    found = find_credentials(env)
    assert (found.access_key, found.region) == ("AKENV", "eu-west-3")
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = d\n"
        "[archive]\naws_access_key_id = AKPROFILE\naws_secret_access_key = p\n"
    )
    (tmp_path / "config").write_text("[profile archive]\nregion = eu-central-1\n")
    files = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
    }
    assert find_credentials(files).access_key == "AKDEFAULT"
    profile = find_credentials({**files, "AWS_PROFILE": "archive"})
    assert (profile.access_key, profile.region) == ("AKPROFILE", "eu-central-1")
    with pytest.raises(S3Error, match="AWS_ACCESS_KEY_ID"):
        find_credentials({"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})

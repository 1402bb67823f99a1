"""The free-space floor and a retrieval's bound, as settings give them and as a store keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomtls.node.room import Floor, parse_floor, parse_size, size_text
from dicomtls.node.storage import DurableStore, FileMeta, StorageError

GIB = 1 << 30


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1GiB", GIB),
        ("1 GiB", GIB),
        ("500MB", 500_000_000),
        ("2.5G", 2_500_000_000),
        ("4096", 4096),
        (4096, 4096),
        ("0", 0),
        ("10kib", 10_240),
    ],
)
def test_a_size_is_read_in_the_units_people_write(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1", "1 GiBs", "", "1e9", True, -5])
def test_a_size_that_is_none_is_refused(text: str | int) -> None:
    with pytest.raises(ValueError, match="give bytes"):
        parse_size(text)


def test_the_default_floor_is_1_gib_or_5_percent_whichever_is_smaller() -> None:
    assert Floor().of(100 * GIB) == GIB
    assert Floor().of(10 * GIB) == GIB // 2
    assert Floor().describe() == "1.0 GiB or 5% of the disk, whichever is smaller"


def test_a_floor_is_a_size_or_a_share_of_the_disk() -> None:
    assert parse_floor("2GiB").of(GIB) == 2 * GIB
    assert parse_floor("10%").of(10 * GIB) == GIB
    assert parse_floor(0).of(GIB) == 0
    for wrong in ("100%", "-3%", "many%"):
        with pytest.raises(ValueError, match="share"):
            parse_floor(wrong)
    assert size_text(1536) == "1.5 KiB" and size_text(12) == "12 bytes"


def _meta(uid: str) -> FileMeta:
    return FileMeta("1.2.840.10008.5.1.4.1.1.2", uid, "1.2.840.10008.1.2.1",
                    implementation_class_uid="1.2.3")  # fmt: skip


def test_a_store_takes_no_more_than_max_bytes_and_keeps_nothing_of_the_object_past_it(
    tmp_path: Path,
) -> None:
    store = DurableStore(tmp_path, fsync=False, flat=True, max_bytes=10_000)
    first = store.begin(_meta("1.2.3.1"))
    first.write(bytes(4000))
    kept = first.commit()
    second = store.begin(_meta("1.2.3.2"))
    with pytest.raises(StorageError, match=r"max-bytes of 9\.8 KiB"):
        second.write(bytes(8000))
    assert store.room is not None and store.room.refused is not None
    third = store.begin(_meta("1.2.3.3"))  # what the refused object took was given back
    third.write(bytes(4000))
    third.commit()
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.2.3.1.dcm", "1.2.3.3.dcm"]
    assert kept.size > 4000


def test_a_store_below_its_floor_refuses_an_object_before_a_byte_is_written(
    tmp_path: Path,
) -> None:
    store = DurableStore(tmp_path, fsync=False, floor=Floor(1 << 62, None))
    with pytest.raises(StorageError, match=r"free, below its floor of .* \(min_free_space\)"):
        store.begin(_meta("1.2.3.1"))
    store.close()
    assert not list((tmp_path / ".incoming").iterdir())
    assert not list((tmp_path / "objects").iterdir())

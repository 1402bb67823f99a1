"""Small data sets from peers (identifiers): parsed whole, without a warning per odd value."""

from __future__ import annotations

import logging
import warnings

import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomtls.dimse.datasets import decode_dataset, encode_dataset

EXPLICIT = "1.2.840.10008.1.2.1"


def test_a_peers_wildcards_in_uid_elements_parse_without_a_warning_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    query = Dataset()
    for element in range(0x000D, 0x000D + 200):  # 200 UI elements holding '*'
        query.add(DataElement(0x00200000 | element, "UI", "*", validation_mode=config.IGNORE))
    wire = encode_dataset(query, EXPLICIT)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings():
        warnings.simplefilter("error")  # a UserWarning would fail the test
        parsed = decode_dataset(wire, EXPLICIT)
    assert parsed[0x0020000D].value == "*" and len(parsed) == 200
    assert [r for r in caplog.records if r.name.startswith("pydicom")] == []
    assert config.settings.reading_validation_mode == config.WARN  # restored afterwards


def test_text_beyond_ascii_goes_out_with_its_character_set_declared() -> None:
    """PS3.4 C.4.1.1.3.2: a query or an answer holding such text says how it is encoded."""
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "Müller^Jürgen=ミュラー^ユルゲン"
    parsed = decode_dataset(encode_dataset(query, EXPLICIT), EXPLICIT)
    assert parsed.SpecificCharacterSet == "ISO_IR 192"
    assert str(parsed.PatientName) == "Müller^Jürgen=ミュラー^ユルゲン"
    assert "SpecificCharacterSet" not in query  # the caller's data set is left as it was
    plain = Dataset()
    plain.PatientName = "Doe^Jane"
    assert "SpecificCharacterSet" not in decode_dataset(encode_dataset(plain, EXPLICIT), EXPLICIT)

"""``dicomtls.ul`` offers its modules' public names, each bound, once."""

from __future__ import annotations

import dicomtls.ul
from dicomtls.ul import errors, items, pdu, reader


def test_the_package_offers_each_modules_public_names_once() -> None:
    names = dicomtls.ul.__all__
    assert len(set(names)) == len(names)
    for module in (errors, items, pdu, reader):
        for name in module.__all__:
            assert getattr(dicomtls.ul, name) is getattr(module, name), name
    assert "decode_items" not in names  # a helper of pdu, not the package's

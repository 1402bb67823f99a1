"""VerifyError codes are OpenSSL's numbers; every code has a message and a hint."""

from OpenSSL._util import lib

from dicomtls.tls.verify_error import VerifyCode, VerifyError


def test_codes_are_openssls() -> None:
    checked = 0
    for code in VerifyCode:
        constant = "X509_V_OK" if code is VerifyCode.OK else f"X509_V_ERR_{code.name}"
        if hasattr(lib, constant):
            assert getattr(lib, constant) == code.value, code.name
            checked += 1
    assert checked >= 50  # the constants pyOpenSSL binds; the rest follow the same header


def test_messages_and_hints() -> None:
    purpose = VerifyError(26, 0)
    assert purpose.name == "INVALID_PURPOSE"
    assert purpose.message == "unsuitable certificate purpose"
    assert "serverAuth and clientAuth" in purpose.hint
    assert str(purpose) == "INVALID_PURPOSE (26) at depth 0: unsuitable certificate purpose"
    for code in VerifyCode:
        error = VerifyError(code)
        assert error.message
        assert error.hint or code is VerifyCode.OK


def test_unknown_codes_survive() -> None:
    error = VerifyError.from_openssl(4242, 3)
    assert error.name == "UNKNOWN_4242"
    assert not error.ok
    assert error.to_dict()["depth"] == 3

"""VerifyError codes are OpenSSL's numbers; every code has a message and a hint."""

from OpenSSL._util import ffi, lib

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


def test_a_callback_rejection_is_openssls_unspecified() -> None:
    """OpenSSL records X509_V_ERR_UNSPECIFIED when only the callback refused; we name it."""
    refused = VerifyError.callback_rejection(2)
    assert (refused.code, refused.name, refused.depth) == (1, "UNSPECIFIED", 2)
    assert not refused.ok and refused.by_callback
    assert str(refused) == (
        "UNSPECIFIED (1) at depth 2: "
        "the verify callback rejected a certificate that passed OpenSSL's checks"
    )
    assert "on_verify returned False" in refused.hint
    assert refused.to_dict()["by_callback"] is True
    plain = VerifyError(VerifyCode.UNSPECIFIED)  # OpenSSL's own, from elsewhere
    wording = ffi.string(lib.X509_verify_cert_error_string(1)).decode()
    assert plain.message == wording == "unspecified certificate verification error"
    assert not plain.by_callback and plain.to_dict()["by_callback"] is False

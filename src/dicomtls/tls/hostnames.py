"""Whether a certificate's DNS name covers the host we dialled (RFC 6125 6.4), one rule for
the TLS engine's check and for ``doctor``'s diagnosis of it.

A wildcard stands for exactly one whole left-most label, and only over at least two more
labels, as OpenSSL's ``X509_check_host`` has it: ``*.example.org`` covers ``pacs.example.org``
but neither ``example.org`` nor ``a.b.example.org``, and ``*.org`` covers nothing (a CA that
issued it would otherwise vouch for a whole top-level domain). Partial wildcards
(``pacs*.example.org``) are not honoured.
"""

from __future__ import annotations

__all__ = ["dns_name_matches"]


def dns_name_matches(pattern: str, host: str) -> bool:
    """``pattern`` (a subjectAltName dNSName) names ``host``: the same name in any ASCII
    case, trailing dots aside, or a wildcard standing for its first label."""
    pattern, host = pattern.rstrip(".").lower(), host.rstrip(".").lower()
    if pattern == host:
        return bool(host)
    if not pattern.startswith("*.") or pattern.count(".") < 2 or "*" in pattern[1:]:
        return False
    head, _, rest = host.partition(".")
    return bool(head) and rest == pattern[2:]

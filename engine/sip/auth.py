"""Digest authentication (RFC 2617, RFC 7616, RFC 8760): pure functions over credentials and nonces."""

from __future__ import annotations

import hashlib
from typing import Final

ALGORITHMS: Final = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """HA1 = H(username:realm:password) as lower-case hex (RFC 7616 §3.4.2).

    Raises:
        ValueError: the algorithm is not one we support.
    """
    try:
        h = ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}") from None
    return h(f"{username}:{realm}:{password}".encode()).hexdigest()

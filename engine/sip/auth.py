"""Digest authentication (RFC 2617, RFC 7616, RFC 8760): pure functions over credentials and nonces.

This module owns the server side of HTTP Digest as SIP uses it (RFC 3261 §22.4): building the challenge
values (``WWW-Authenticate``/``Proxy-Authenticate``), parsing credentials (``Authorization``/
``Proxy-Authorization``), verifying the request-digest, refusing replays, and throttling sources that keep
failing. It is sans-IO: the current time arrives as ``now`` (monotonic seconds, as ``engine.clock`` gives
it), randomness from an injected ``random.Random``, and the credential store through a ``lookup`` callable.

Design notes
------------
*Stateless nonces.* A nonce is ``urlsafe-base64-nopad(issued_ms(8) | random(8) | tag(16))`` where ``tag`` is
HMAC-SHA256 over the realm and the first 16 bytes, keyed with the authenticator's secret and truncated to 16
bytes. Verifying one needs no table: the tag proves we issued it and the timestamp gives its age (RFC 7616
§3.3 suggests this shape: time-stamp H(time-stamp ":" ETag ":" secret)). Because ``now`` is a
monotonic clock, a nonce is only meaningful to the process (or clock domain) that issued it, and the secret
must be fresh per process start: with a secret reused across a reboot, an old nonce would look new again
once the monotonic clock reached its timestamp.

*Replays* (RFC 7616 §3.4 nc, §5.4 limited-use nonces, §5.5 replay attacks). Successful uses are recorded in a
bounded, least-recently-used table ``nonce -> highest nonce-count``; a request must carry a strictly greater
nc than the one recorded. When the table is full the least recently used entry is evicted and its issue time
raises an *eviction watermark*. A valid, unexpired nonce that is not in the table and was issued at or before
the watermark might have been used and evicted, so it is answered STALE (the client retries at once with a
fresh nonce, without a failure being counted); one issued after the watermark cannot have been evicted, so it
has never been used and is accepted and recorded. Together: the same (nonce, nc) is never accepted twice,
tracked or not. Size ``max_tracked_nonces`` above the number of nonces used within one ``nonce_ttl_s``, or
clients will see extra STALE challenges.

*Throttling* (RFC 7616 §5.7 online dictionary attacks). FAILED results are counted per source in a fixed
window opened by the first failure; reaching ``failure_limit`` inside ``failure_window_s`` blocks the source
for ``block_s``. A success neither resets the count nor lifts a block (otherwise one valid account would let a
source brute-force the others). Both tables together hold at most ``max_tracked_sources`` entries; counters
are evicted before blocks.

*Tolerances* (STYLE 3.5: named, tested, switchable):
``allow_rfc2069``: accept credentials without ``qop`` (RFC 2069 §2.1.2 response = H(HA1:nonce:HA2)), as old
phones send; such a nonce is good for one request (RFC 7616 §5.4), a reuse is answered STALE.
``require_opaque=False``: accept credentials that drop ``opaque`` (RFC 7616 §3.4 says it MUST be returned).
Quoted values for token parameters (``algorithm="MD5"``, ``qop="auth"``) are accepted because RFC 7235 §2.2
grammar allows ``token / quoted-string`` for every auth-param.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:
    import random

__all__ = [
    "ALGORITHMS",
    "MAX_CREDENTIALS_LENGTH",
    "AuthOutcome",
    "AuthResult",
    "Credentials",
    "DigestAuthenticator",
    "compute_ha1",
    "compute_response",
    "parse_credentials",
]

ALGORITHMS: Final = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

#: Longest credentials header value we look at; real ones are 300-600 bytes.
MAX_CREDENTIALS_LENGTH: Final = 4096

_TS_BYTES: Final = 8
_RANDOM_BYTES: Final = 8
_TAG_BYTES: Final = 16
_HEAD_BYTES: Final = _TS_BYTES + _RANDOM_BYTES
_NONCE_BYTES: Final = _HEAD_BYTES + _TAG_BYTES
_NONCE_CHARS: Final = 43  # ceil(32 * 4 / 3) without the one "=" of padding
_TIMESTAMP: Final = struct.Struct(">q")  # signed: a test clock may start below zero
_NC_SPENT: Final = 1 << 32  # above any 8-hex-digit nc: the nonce may not be used again
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_U64_MASK: Final = (1 << 64) - 1
_MIN_SECRET_BYTES: Final = 16
_SHA256_BLOCK: Final = 64
_CACHE_SIZE: Final = 4096  # HA2 values and OK results kept per authenticator
_DUMMY_HA1: Final = "0" * 64


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


# --------------------------------------------------------------------------------------------------------
# The request-digest


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str  # the spelling we send in challenges
    hexdigest: Callable[[bytes], str]
    sha256: bool  # which stored HA1 it uses
    sess: bool  # RFC 7616 §3.4.2: HA1 = H(H(user:realm:pass):nonce:cnonce)


#: Keyed by the upper-cased name: RFC 3261 §7.3.1 "Tokens are always case-insensitive".
_ALGORITHM_TABLE: Final[dict[str, _Algorithm]] = {
    "MD5": _Algorithm("MD5", _md5_hex, False, False),
    "MD5-SESS": _Algorithm("MD5-sess", _md5_hex, False, True),
    "SHA-256": _Algorithm("SHA-256", _sha256_hex, True, False),
    "SHA-256-SESS": _Algorithm("SHA-256-sess", _sha256_hex, True, True),
}


def _ha2(algo: _Algorithm, method: str, uri: str) -> str:
    # RFC 7616 §3.4.3: for qop=auth (or none), A2 = Method ":" request-uri.
    return algo.hexdigest(f"{method}:{uri}".encode())


def _request_digest(
    algo: _Algorithm, ha1: str, nonce: str, qop: str | None, nc: str, cnonce: str, ha2: str
) -> str:
    h = algo.hexdigest
    if algo.sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}".encode())
    if qop is None:
        # RFC 2069 §2.1.2 (kept by RFC 2617 §3.2.2.1 for compatibility): KD(HA1, nonce:HA2).
        return h(f"{ha1}:{nonce}:{ha2}".encode())
    # RFC 7616 §3.4.1: KD(HA1, nonce:nc:cnonce:qop:HA2).
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


def compute_response(
    ha1: str,
    nonce: str,
    method: str,
    digest_uri: str,
    *,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The request-digest a client sends as ``response`` (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).

    Args:
        ha1: lower-case hex of H(username:realm:password) for ``algorithm``'s hash (see ``compute_ha1``).
        nonce: the server nonce, exactly as sent.
        method: the request method (``REGISTER``).
        digest_uri: the ``uri`` parameter (RFC 3261 §22.4: the Request-URI).
        algorithm: ``MD5``, ``SHA-256``, ``MD5-sess`` or ``SHA-256-sess`` (case-insensitive).
        qop: ``"auth"``, or None for the RFC 2069 form H(HA1:nonce:HA2).
        nc: the nonce-count as sent (8 hex digits) when ``qop`` is given.
        cnonce: the client nonce when ``qop`` is given.

    Returns:
        The lower-case hex request-digest.

    Raises:
        ValueError: unsupported algorithm or qop, a ``-sess`` algorithm without qop, or text that cannot
            be encoded as UTF-8 (``UnicodeEncodeError``).
    """
    algo = _ALGORITHM_TABLE.get(algorithm.upper())
    if algo is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    if qop is not None and qop.lower() != "auth":
        raise ValueError(f"unsupported qop {qop!r}")
    if algo.sess and qop is None:
        raise ValueError(f"{algo.name} needs qop and cnonce")
    return _request_digest(algo, ha1, nonce, qop, nc, cnonce, _ha2(algo, method, digest_uri))


# --------------------------------------------------------------------------------------------------------
# Parsing credentials (RFC 7235 §2.1 / RFC 3261 §25.1 auth-param lists)

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
_TOKEN: Final = r"[A-Za-z0-9\-.!%*_+`'~]++"
# quoted-string body: qdtext (LWS, %x21, %x23-5B, %x5D-7E, UTF8-NONASCII) / quoted-pair ("\" %x00-09 /
# %x0B-0C / %x0E-7F), written as runs of qdtext between quoted-pairs ("unrolled"): sre matches a run of one
# character class in C, where an alternation per character would cost ten times as much.
_QDTEXT: Final = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*+'
_QUOTED_BODY: Final = rf"{_QDTEXT}(?:\\[\x00-\x09\x0b\x0c\x0e-\x7f]{_QDTEXT})*+"
_PARAM: Final = rf'[ \t]*+{_TOKEN}[ \t]*+=[ \t]*+(?:"{_QUOTED_BODY}"|{_TOKEN})[ \t]*+'
# Validation pass: the whole list, anchored, possessive (linear time on any input) ...
_PARAM_LIST_RE: Final = re.compile(rf"{_PARAM}(?:,{_PARAM})*+")
# ... then extraction of (name, quoted body, token) from text already known to be well formed.
_PARAM_ITEM_RE: Final = re.compile(rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"({_QUOTED_BODY})"|({_TOKEN}))[ \t]*,?')
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_TOKEN_RE: Final = re.compile(_TOKEN)
# RFC 8187 §3.2.1 ext-value = charset "'" [ language ] "'" value-chars (attr-char / pct-encoded).
_EXT_VALUE_RE: Final = re.compile(
    r"([A-Za-z0-9!#$%&+\-^_`{}~]+)'([A-Za-z0-9\-]*)'((?:[A-Za-z0-9!#$&+\-.^_`|~]|%[0-9A-Fa-f]{2})*)"
)


def _parse_params(text: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted"`` into a dict (names lower-cased, values unquoted).

    Raises:
        ValueError: the text is not a comma-separated auth-param list, or a parameter repeats.
    """
    text = text.strip()
    if not text:
        return {}
    if _PARAM_LIST_RE.fullmatch(text) is None:
        raise ValueError("malformed digest parameter list")
    items = _PARAM_ITEM_RE.findall(text)
    params: dict[str, str] = {}
    for name, quoted, token in items:
        # A token is never empty, so an empty token means the quoted alternative matched.
        if token:
            value = token
        elif "\\" in quoted:
            value = _QUOTED_PAIR_RE.sub(r"\1", quoted)
        else:
            value = quoted
        params[name.lower()] = value
    if len(params) != len(items):
        # RFC 7616 §3.4: "each one of these directives MUST NOT appear more than once".
        raise ValueError("repeated digest parameter")
    return params


def parse_credentials(value: str) -> tuple[str, dict[str, str]]:
    """Split a credentials header value into its scheme and auth-params (RFC 7235 §2.1).

    ``Digest username="bob", realm="pbx", qop=auth, nc=00000001`` gives
    ``("digest", {"username": "bob", "realm": "pbx", "qop": "auth", "nc": "00000001"})``. The scheme and the
    parameter names are lower-cased (both case-insensitive); values are returned unquoted with backslash
    escapes resolved. Whitespace around ``=`` and ``,`` is allowed; commas may appear inside quotes. A bare
    scheme gives an empty dict. The token68 form (``Basic dXNlcg==``) is not an auth-param list and raises.

    Args:
        value: the header value, without the header name.

    Returns:
        ``(scheme, params)``.

    Raises:
        ValueError: a missing or non-token scheme, a malformed list, or a repeated parameter.
    """
    parts = value.split(None, 1)
    if not parts or _TOKEN_RE.fullmatch(parts[0]) is None:
        raise ValueError("missing or malformed authentication scheme")
    return parts[0].lower(), (_parse_params(parts[1]) if len(parts) > 1 else {})


def _quote(text: str) -> str:
    """``text`` as a quoted-string (RFC 3261 §25.1 quoted-pair for ``\\`` and ``"``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _decode_ext_value(value: str) -> str:
    """Decode an RFC 8187 ext-value (RFC 7616 §3.4 ``username*``); only UTF-8 is accepted.

    Raises:
        ValueError: not an ext-value, not UTF-8, or undecodable bytes.
    """
    m = _EXT_VALUE_RE.fullmatch(value)
    if m is None or m.group(1).lower() != "utf-8":
        raise ValueError("username* is not a UTF-8 ext-value")
    return unquote_to_bytes(m.group(3)).decode("utf-8")


# --------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the credential store knows about one user; passwords are never stored, only HA1s.

    Attributes:
        username: the digest username.
        realm: the realm the HA1 values were computed for.
        ha1_md5: lower-case hex of MD5(username:realm:password).
        ha1_sha256: lower-case hex of SHA-256(username:realm:password).
    """

    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str


class AuthOutcome(enum.Enum):
    """What the server should do with a request after checking its credentials."""

    OK = "ok"  # authenticated
    MISSING = "missing"  # no credentials for our realm and scheme: answer 401/407 with a challenge
    STALE = "stale"  # right password, expired or already used nonce: challenge with stale=true
    FAILED = "failed"  # wrong response, unknown user, replay, bad nonce: challenge, counts as a failure
    BLOCKED = "blocked"  # the source is throttled: answer 403
    MALFORMED = "malformed"  # unparseable credentials or missing required parameters: answer 400


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of ``DigestAuthenticator.verify``.

    Attributes:
        outcome: what to do.
        username: the claimed username when the credentials got far enough to name one.
        reason: a short phrase for logs. It says e.g. "unknown user", so a server answering FAILED should
            use a generic reason phrase on the wire to avoid revealing which usernames exist.
    """

    outcome: AuthOutcome
    username: str | None = None
    reason: str = ""


def _result(outcome: AuthOutcome, reason: str) -> AuthResult:
    return AuthResult(outcome, None, reason)


_OK: Final = AuthOutcome.OK
_MISSING: Final = AuthOutcome.MISSING
_STALE: Final = AuthOutcome.STALE
_FAILED: Final = AuthOutcome.FAILED
_MALFORMED: Final = AuthOutcome.MALFORMED

# Username-free results are shared (the hot path of a flood should not allocate).
_R_BLOCKED: Final = _result(AuthOutcome.BLOCKED, "source is blocked after repeated failures")
_R_NO_HEADER: Final = _result(_MISSING, "no credentials")
_R_OTHER_SCHEME: Final = _result(_MISSING, "credentials are not Digest")
_R_OTHER_REALM: Final = _result(_MISSING, "credentials are for another realm")
_R_TOO_LONG: Final = _result(_MALFORMED, "credentials too long")
_R_EMPTY: Final = _result(_MALFORMED, "empty credentials")
_R_BAD_SCHEME: Final = _result(_MALFORMED, "malformed authentication scheme")
_R_BAD_PARAMS: Final = _result(_MALFORMED, "malformed Digest parameters")
_R_NO_REALM: Final = _result(_MALFORMED, "Digest realm missing")
_R_NO_USERNAME: Final = _result(_MALFORMED, "Digest username missing")
_R_TWO_USERNAMES: Final = _result(_MALFORMED, "both username and username* present")
_R_BAD_USERNAME_EXT: Final = _result(_MALFORMED, "malformed username*")
_R_NO_NONCE: Final = _result(_MALFORMED, "Digest nonce missing")
_R_NO_URI: Final = _result(_MALFORMED, "Digest uri missing")
_R_NO_RESPONSE: Final = _result(_MALFORMED, "Digest response missing")
_R_URI_MISMATCH: Final = _result(_MALFORMED, "Digest uri does not match Request-URI")
_R_NO_CNONCE: Final = _result(_MALFORMED, "Digest cnonce missing")
_R_NO_NC: Final = _result(_MALFORMED, "Digest nc missing")
_R_BAD_NC: Final = _result(_MALFORMED, "Digest nc is not 8 hex digits")
_R_ZERO_NC: Final = _result(_MALFORMED, "Digest nc must start at 00000001")
_R_NO_QOP: Final = _result(_MALFORMED, "Digest qop missing")
_R_SESS_NO_QOP: Final = _result(_MALFORMED, "-sess algorithm without qop")
_R_NO_OPAQUE: Final = _result(_MALFORMED, "Digest opaque missing")
_R_UNENCODABLE: Final = _result(_MALFORMED, "credentials contain unencodable characters")


class _FailureWindow:
    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0


# --------------------------------------------------------------------------------------------------------
# The authenticator


class DigestAuthenticator:
    """Issues Digest challenges for one realm and verifies credentials against them.

    One instance serves one realm in one process; it is not thread-safe (the engine runs one event loop).

    Args:
        realm: the protection space (RFC 7616 §3.3), e.g. the PBX domain.
        secret: at least 16 random bytes, fresh per process start (see the module notes).
        nonce_ttl_s: a nonce older than this is STALE.
        algorithms: offered in this order (RFC 8760 §2.3: most preferred first); any of ``MD5``, ``SHA-256``,
            ``MD5-sess``, ``SHA-256-sess``. Credentials using an algorithm not offered are FAILED.
        max_tracked_nonces: bound on the replay table.
        failure_limit: FAILED results from one source within ``failure_window_s`` that block it.
        failure_window_s: the counting window, opened by a source's first failure.
        block_s: how long a blocked source gets BLOCKED.
        max_tracked_sources: bound on the failure and block tables together.
        rng: source of the nonces' random part; None uses a counter (nonces stay unique, and the HMAC tag,
            not unpredictability, is what makes them unforgeable).
        allow_rfc2069: accept credentials without qop (tolerance, see the module notes).
        require_opaque: insist that credentials return our ``opaque`` (strict RFC 7616 §3.4).

    Raises:
        ValueError: an empty or unknown algorithm list, a short secret, or a non-positive limit.
    """

    __slots__ = (
        "_allow_rfc2069",
        "_block_s",
        "_blocked",
        "_challenge_parts",
        "_counter",
        "_failure_limit",
        "_failure_window_s",
        "_failures",
        "_ha2_md5",
        "_ha2_sha256",
        "_mac_inner",
        "_mac_outer",
        "_max_nonces",
        "_max_sources",
        "_nonces",
        "_offered",
        "_ok_results",
        "_opaque",
        "_realm",
        "_require_opaque",
        "_rng",
        "_ttl_ms",
        "_watermark_ms",
    )

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_ttl_s: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        max_tracked_nonces: int = 200_000,
        failure_limit: int = 10,
        failure_window_s: float = 60.0,
        block_s: float = 120.0,
        max_tracked_sources: int = 100_000,
        rng: random.Random | None = None,
        allow_rfc2069: bool = True,
        require_opaque: bool = False,
    ) -> None:
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the nonce secret must have at least {_MIN_SECRET_BYTES} bytes")
        if not algorithms:
            raise ValueError("at least one digest algorithm must be offered")
        if min(max_tracked_nonces, failure_limit, max_tracked_sources) < 1:
            raise ValueError("limits must be positive")
        if min(nonce_ttl_s, failure_window_s, block_s) <= 0:
            raise ValueError("durations must be positive")
        offered: dict[str, _Algorithm] = {}
        for name in algorithms:
            algo = _ALGORITHM_TABLE.get(name.upper())
            if algo is None or algo.name != name:
                raise ValueError(f"unsupported digest algorithm {name!r}")
            if name.upper() in offered:
                raise ValueError(f"digest algorithm {name!r} offered twice")
            offered[name.upper()] = algo
        self._realm = realm
        self._offered = offered
        self._ttl_ms = int(nonce_ttl_s * 1000)
        self._max_nonces = max_tracked_nonces
        self._failure_limit = failure_limit
        self._failure_window_s = failure_window_s
        self._block_s = block_s
        self._max_sources = max_tracked_sources
        self._rng = rng
        self._counter = 0
        self._allow_rfc2069 = allow_rfc2069
        self._require_opaque = require_opaque
        realm_bytes = realm.encode()
        # HMAC-SHA256 (RFC 2104) with both pad blocks, and the domain-separated realm prefix, absorbed once:
        # a tag then costs two copy/update/digest rounds, about 60 % of hmac.new(...).copy() and a third of
        # hmac.digest(), which redoes the key schedule on every call.
        key = hashlib.sha256(secret).digest() if len(secret) > _SHA256_BLOCK else secret
        key = key.ljust(_SHA256_BLOCK, b"\x00")
        self._mac_inner = hashlib.sha256(bytes(k ^ 0x36 for k in key))
        self._mac_inner.update(b"pbx-digest-nonce\x00" + realm_bytes + b"\x00")
        self._mac_outer = hashlib.sha256(bytes(k ^ 0x5C for k in key))
        # RFC 7616 §3.3 opaque: any server data the client echoes. Ours is fixed per (secret, realm), so
        # checking it costs a string comparison; it only adds meaning when the nonce check already passed.
        opaque_tag = hmac.digest(secret, b"pbx-digest-opaque\x00" + realm_bytes, "sha256")[:12]
        self._opaque = base64.urlsafe_b64encode(opaque_tag).decode("ascii")
        head = f'Digest realm={_quote(realm)}, nonce="'
        self._challenge_parts = tuple(
            (head, f'", opaque="{self._opaque}", algorithm={algo.name}, qop="auth"')
            for algo in offered.values()
        )
        self._nonces: dict[bytes, int] = {}
        self._watermark_ms = -(1 << 63)
        self._failures: dict[str, _FailureWindow] = {}
        self._blocked: dict[str, float] = {}
        self._ha2_md5: dict[tuple[str, str], str] = {}
        self._ha2_sha256: dict[tuple[str, str], str] = {}
        self._ok_results: dict[str, AuthResult] = {}

    # ---------------------------------------------------------------------------------------- properties

    @property
    def realm(self) -> str:
        """The realm this authenticator challenges for."""
        return self._realm

    @property
    def opaque(self) -> str:
        """The ``opaque`` value every challenge carries."""
        return self._opaque

    @property
    def tracked_nonces(self) -> int:
        """Entries in the replay table (never more than ``max_tracked_nonces``)."""
        return len(self._nonces)

    @property
    def tracked_sources(self) -> int:
        """Sources with a failure count or a block (never more than ``max_tracked_sources``)."""
        return len(self._failures) + len(self._blocked)

    # ---------------------------------------------------------------------------------------- nonces

    def _tag(self, head: bytes) -> bytes:
        """HMAC-SHA256(secret, prefix | head) truncated to 16 bytes (RFC 2104 §5 allows truncation)."""
        inner = self._mac_inner.copy()
        inner.update(head)
        outer = self._mac_outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_TAG_BYTES]

    def _issue_nonce(self, now: float) -> str:
        if self._rng is not None:
            rand = self._rng.getrandbits(64)
        else:
            self._counter = rand = (self._counter + 1) & _U64_MASK
        head = _TIMESTAMP.pack(int(now * 1000)) + rand.to_bytes(_RANDOM_BYTES, "big")
        return base64.urlsafe_b64encode(head + self._tag(head)).rstrip(b"=").decode("ascii")

    def _open_nonce(self, nonce: str) -> bytes | None:
        """The nonce's 32 bytes when we issued it (whatever its age), else None."""
        if len(nonce) != _NONCE_CHARS or "+" in nonce or "/" in nonce:
            return None
        try:
            # str.replace twice is ~7x faster than str.translate with a mapping table.
            raw = binascii.a2b_base64(nonce.replace("-", "+").replace("_", "/") + "=", strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        if not hmac.compare_digest(self._tag(raw[:_HEAD_BYTES]), raw[_HEAD_BYTES:]):
            return None
        # Keyed by the decoded bytes, not the text, so that the several base64 spellings of one nonce
        # (the 2 unused low bits of the last character) share one replay entry.
        return raw

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values for a fresh nonce, one per offered algorithm.

        RFC 8760 §2.3: the challenges go in preference order (SHA-256 first); §2.4: the client uses the
        topmost one whose algorithm it supports (RFC 7616 §3.7). All of them share one nonce.

        Args:
            now: the current monotonic time in seconds.
            stale: add ``stale=true`` (RFC 7616 §3.3): the previous nonce was refused only for its age,
                so the client retries without asking its user again.

        Returns:
            e.g. ``['Digest realm="pbx", nonce="...", opaque="...", algorithm=SHA-256, qop="auth"', ...]``.

        Raises:
            struct.error: ``now`` is beyond the signed 64-bit millisecond range (a caller bug).
            ValueError, OverflowError: ``now`` is NaN or infinite (a caller bug).
        """
        nonce = self._issue_nonce(now)
        if stale:
            return [f"{head}{nonce}{tail}, stale=true" for head, tail in self._challenge_parts]
        return [f"{head}{nonce}{tail}" for head, tail in self._challenge_parts]

    # ---------------------------------------------------------------------------------------- throttling

    def is_blocked(self, source: str, now: float) -> bool:
        """True while ``source`` is blocked after ``failure_limit`` failures.

        Raises:
            Nothing.
        """
        until = self._blocked.get(source)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked[source]
        return False

    def _record_failure(self, source: str, now: float) -> None:
        window = self._failures.get(source)
        if window is None or now - window.start >= self._failure_window_s:
            if window is not None:
                del self._failures[source]  # re-inserted at the end: the dict stays ordered by start
            else:
                self._make_room(now)
            window = self._failures[source] = _FailureWindow(now)
        window.count += 1
        if window.count >= self._failure_limit:
            del self._failures[source]
            self._blocked.pop(source, None)  # keep the dict ordered by block time
            self._blocked[source] = now + self._block_s

    def _make_room(self, now: float) -> None:
        """Free one slot in the source tables when they are full: an expired block, else the oldest count."""
        failures, blocked = self._failures, self._blocked
        if len(failures) + len(blocked) < self._max_sources:
            return
        # Blocks all last block_s, so the dict (ordered by block time) has the earliest expiry first.
        if blocked:
            first = next(iter(blocked))
            if blocked[first] <= now or not failures:
                del blocked[first]
                return
        del failures[next(iter(failures))]

    # ---------------------------------------------------------------------------------------- verify

    def verify(
        self,
        method: str,
        request_uri: str,
        header_value: str | None,
        lookup: Callable[[str], Credentials | None],
        now: float,
        source: str,
    ) -> AuthResult:
        """Check a request's Digest credentials (RFC 7616 §3.4, RFC 3261 §22.4).

        Args:
            method: the request method; it enters HA2.
            request_uri: the request's Request-URI as received; the digest ``uri`` must equal it.
            header_value: the Authorization (or Proxy-Authorization) value, or None when absent.
            lookup: the credential store: username -> Credentials, or None for an unknown user.
            now: the current monotonic time in seconds (the clock the nonces were issued with).
            source: the peer's address, the throttling key.

        Returns:
            An ``AuthResult``; every header value, however broken, gives one. FAILED results are counted
            against ``source``; the one that reaches ``failure_limit`` is still FAILED, later ones BLOCKED.

        Raises:
            Whatever ``lookup`` raises; nothing else for any header value. (A NaN or infinite ``now`` is a
            caller bug and raises ValueError or OverflowError once a nonce is checked.)
        """
        until = self._blocked.get(source)
        if until is not None:
            if now < until:
                return _R_BLOCKED
            del self._blocked[source]
        if header_value is None:
            return _R_NO_HEADER
        result = self._check(method, request_uri, header_value, lookup, now)
        if result.outcome is _FAILED:
            self._record_failure(source, now)
        return result

    def _check(
        self,
        method: str,
        request_uri: str,
        header_value: str,
        lookup: Callable[[str], Credentials | None],
        now: float,
    ) -> AuthResult:
        if len(header_value) > MAX_CREDENTIALS_LENGTH:
            return _R_TOO_LONG
        parts = header_value.split(None, 1)
        if not parts:
            return _R_EMPTY
        scheme = parts[0]
        # RFC 7235 §2.1: the auth-scheme is case-insensitive.
        if scheme.lower() != "digest":
            return _R_OTHER_SCHEME if _TOKEN_RE.fullmatch(scheme) else _R_BAD_SCHEME
        try:
            params = _parse_params(parts[1]) if len(parts) > 1 else {}
        except ValueError:
            return _R_BAD_PARAMS

        realm = params.get("realm")
        if realm is None:
            return _R_NO_REALM
        if realm != self._realm:
            # Credentials for some other protection space (RFC 7616 §3.4): we still need our own.
            return _R_OTHER_REALM
        username = params.get("username")
        if username is None:
            ext = params.get("username*")
            if ext is None:
                return _R_NO_USERNAME
            try:
                username = _decode_ext_value(ext)
            except ValueError:
                return _R_BAD_USERNAME_EXT
        elif "username*" in params:
            return _R_TWO_USERNAMES  # RFC 7616 §3.4: username* MUST NOT be used with username
        nonce = params.get("nonce")
        if nonce is None:
            return _R_NO_NONCE
        uri = params.get("uri")
        if uri is None:
            return _R_NO_URI
        response = params.get("response")
        if response is None:
            return _R_NO_RESPONSE
        # RFC 3261 §22.4, RFC 7616 §3.4.6: the digest-uri must denote the Request-URI, or a captured
        # response could be replayed against another resource.
        if uri.strip() != request_uri.strip():
            return _R_URI_MISMATCH

        qop = params.get("qop")
        if qop is not None:
            # We only offer qop="auth"; RFC 3261 §7.3.1 makes the token case-insensitive.
            if qop.lower() != "auth":
                return AuthResult(_FAILED, username, f"unsupported qop {qop[:32]!r}")
            cnonce = params.get("cnonce")
            if cnonce is None:
                return _R_NO_CNONCE
            nc = params.get("nc")
            if nc is None:
                return _R_NO_NC
            # RFC 7616 §3.4: nc-value = 8LHEX. int() alone would also take "+1", "0x1" and "1_0".
            if len(nc) != 8 or not _HEX_DIGITS.issuperset(nc):
                return _R_BAD_NC
            nc_value = int(nc, 16)
            if nc_value == 0:
                return _R_ZERO_NC  # RFC 7616 §3.4: the first request with a nonce has nc=00000001
        elif self._allow_rfc2069:
            cnonce = nc = ""
            nc_value = 0
        else:
            return _R_NO_QOP

        alg_name = params.get("algorithm")
        algo = self._offered.get("MD5" if alg_name is None else alg_name.upper())  # RFC 7616 §3.3 default
        if algo is None:
            shown = "MD5" if alg_name is None else alg_name[:32]
            return AuthResult(_FAILED, username, f"unsupported or unoffered algorithm {shown!r}")
        if algo.sess and qop is None:
            return _R_SESS_NO_QOP
        userhash = params.get("userhash")
        if userhash is not None and userhash.lower() == "true":
            return AuthResult(_FAILED, username, "userhash was not offered")
        opaque = params.get("opaque")
        if opaque is None:
            if self._require_opaque:
                return _R_NO_OPAQUE
        elif opaque != self._opaque:
            return AuthResult(_FAILED, username, "opaque does not match")

        raw = self._open_nonce(nonce)
        if raw is None:
            return AuthResult(_FAILED, username, "nonce was not issued here")
        issued_ms: int = _TIMESTAMP.unpack_from(raw)[0]
        now_ms = int(now * 1000)
        if issued_ms > now_ms:
            return AuthResult(_FAILED, username, "nonce from the future")

        creds = lookup(username)
        try:
            # HA2 depends only on the hash, method and uri: every phone registering to the same
            # Request-URI shares it, so it is cached (bounded: cleared when full).
            ha2_cache = self._ha2_sha256 if algo.sha256 else self._ha2_md5
            ha2 = ha2_cache.get((method, uri))
            if ha2 is None:
                ha2 = _ha2(algo, method, uri)
                if len(ha2_cache) >= _CACHE_SIZE:
                    ha2_cache.clear()
                ha2_cache[method, uri] = ha2
            if creds is None:
                # Hash anyway so that an unknown user costs the same time as a wrong password.
                _request_digest(algo, _DUMMY_HA1, nonce, qop, nc, cnonce, ha2)
                return AuthResult(_FAILED, username, "unknown user")
            ha1 = creds.ha1_sha256 if algo.sha256 else creds.ha1_md5
            expected = _request_digest(algo, ha1, nonce, qop, nc, cnonce, ha2)
        except UnicodeEncodeError:
            return _R_UNENCODABLE
        # Constant time, so timing tells nothing about the expected digest; compare_digest refuses non-ASCII
        # str, so that is checked first.
        if not response.isascii() or not hmac.compare_digest(expected, response):
            return AuthResult(_FAILED, username, "wrong response")

        # The password is right from here on; what remains is whether this nonce may still be used.
        if now_ms - issued_ms > self._ttl_ms:
            return AuthResult(_STALE, username, "nonce expired")
        nonces = self._nonces
        seen = nonces.get(raw)
        if seen is None:
            if issued_ms <= self._watermark_ms:
                return AuthResult(_STALE, username, "nonce no longer tracked")
        elif seen == _NC_SPENT or qop is None:
            # RFC 7616 §5.5: a nonce used without nc is good for one request only.
            return AuthResult(_STALE, username, "nonce already used")
        elif nc_value <= seen:
            return AuthResult(_FAILED, username, "nonce-count replayed")
        else:
            del nonces[raw]  # re-inserted at the end: least recently used first
        nonces[raw] = _NC_SPENT if qop is None else nc_value
        if len(nonces) > self._max_nonces:
            self._evict_nonce()
        # Results are immutable; reusing one per user saves the frozen dataclass's setattr calls.
        ok = self._ok_results.get(username)
        if ok is None:
            if len(self._ok_results) >= _CACHE_SIZE:
                self._ok_results.clear()
            ok = self._ok_results[username] = AuthResult(_OK, username)
        return ok

    def _evict_nonce(self) -> None:
        oldest = next(iter(self._nonces))
        del self._nonces[oldest]
        issued_ms: int = _TIMESTAMP.unpack_from(oldest)[0]
        # (An expired nonce's issue time lies below that of every nonce still valid, so raising the
        # watermark with it is harmless; no special case.)
        if issued_ms > self._watermark_ms:
            self._watermark_ms = issued_ms


def answer_challenge(challenge: str, method: str, uri: str, username: str, password: str, cnonce: str,
                     nc: int = 1) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value that answers a server's Digest ``challenge``
    (RFC 7616 §3.4; what the engine sends a carrier that challenges our outbound INVITE).

    qop=auth is used when offered, else the RFC 2069 form; ``-sess`` algorithms need qop.

    Raises:
        ValueError: not a Digest challenge, no nonce, or an algorithm or qop we cannot answer.
    """
    scheme, params = parse_credentials(challenge)
    if scheme != "digest":
        raise ValueError(f"not a Digest challenge: {scheme!r}")
    nonce = params.get("nonce")
    if nonce is None:
        raise ValueError("challenge without nonce")
    realm = params.get("realm", "")
    algorithm = params.get("algorithm", "MD5")
    offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    if offered and "auth" not in offered:
        raise ValueError(f"unsupported qop {params['qop']!r}")
    qop = "auth" if offered else None
    nc_text = f"{nc:08x}"
    ha1 = compute_ha1(username, realm, password, algorithm.upper().removesuffix("-SESS"))
    response = compute_response(ha1, nonce, method, uri, algorithm=algorithm, qop=qop, nc=nc_text,
                                cnonce=cnonce)
    parts = [f"username={_quote(username)}", f"realm={_quote(realm)}", f"nonce={_quote(nonce)}",
             f"uri={_quote(uri)}", f"response={_quote(response)}", f"algorithm={algorithm}"]
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    return "Digest " + ", ".join(parts)

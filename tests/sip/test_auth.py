"""Digest authentication: RFC vectors, challenge/response round trips, replay, staleness, throttling, fuzzing.

Time is passed by hand (``now``), randomness comes from a seeded ``random.Random``; nothing sleeps. The
expected digests are computed here from the RFC formulas with hashlib, independently of the module.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.sip.auth import (
    AuthOutcome,
    AuthResult,
    Credentials,
    DigestAuthenticator,
    compute_ha1,
    compute_response,
    parse_credentials,
)

REALM = "pbx.example.com"
SECRET = b"0123456789abcdef0123456789abcdef"
URI = "sip:pbx.example.com"
PASSWORD = "s3cret-Pa55"
SOURCE = "192.0.2.10"

OK = AuthOutcome.OK
MISSING = AuthOutcome.MISSING
STALE = AuthOutcome.STALE
FAILED = AuthOutcome.FAILED
BLOCKED = AuthOutcome.BLOCKED
MALFORMED = AuthOutcome.MALFORMED


# ------------------------------------------------------------------------------------------------ helpers


def _h(algorithm: str, text: str) -> str:
    """H() of RFC 7616 §3.4: lower-case hex of MD5 or SHA-256 over the UTF-8 text."""
    base = algorithm.upper().removesuffix("-SESS")
    fn = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[base]
    return fn(text.encode()).hexdigest()


def _creds(username: str, password: str = PASSWORD, realm: str = REALM) -> Credentials:
    return Credentials(
        username,
        realm,
        _h("MD5", f"{username}:{realm}:{password}"),
        _h("SHA-256", f"{username}:{realm}:{password}"),
    )


USERS = {"alice": _creds("alice"), "bob": _creds("bob", "bobs-password"), "Jäsøn Doe": _creds("Jäsøn Doe")}


def _challenge_params(challenge: str) -> dict[str, str]:
    """A deliberately separate, naive reader of our own challenges (no escapes occur in them)."""
    assert challenge.startswith("Digest ")
    found = re.findall(r'([\w-]+)=(?:"([^"]*)"|([^,\s]+))', challenge)
    return {name: quoted or token for name, quoted, token in found}


def _pick(challenges: list[str], algorithm: str) -> dict[str, str]:
    for challenge in challenges:
        params = _challenge_params(challenge)
        if params["algorithm"] == algorithm:
            return params
    raise AssertionError(f"no {algorithm} challenge in {challenges}")


def _answer(
    chal: dict[str, str],
    *,
    username: str = "alice",
    password: str = PASSWORD,
    method: str = "REGISTER",
    uri: str = URI,
    nc: int = 1,
    cnonce: str = "0a4f113b",
    algorithm: str | None = None,
    qop: bool = True,
    nonce: str | None = None,
    opaque: str | None = "from-challenge",
    realm: str | None = None,
) -> str:
    """An Authorization value computed from RFC 7616 §3.4.1 (or RFC 2069 without qop) in the test."""
    alg = algorithm or chal["algorithm"]
    nonce = chal["nonce"] if nonce is None else nonce
    realm = chal["realm"] if realm is None else realm
    ha1 = _h(alg, f"{username}:{realm}:{password}")
    if alg.upper().endswith("-SESS"):
        ha1 = _h(alg, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(alg, f"{method}:{uri}")
    if qop:
        response = _h(alg, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    else:
        response = _h(alg, f"{ha1}:{nonce}:{ha2}")
    value = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={alg}'
    )
    if opaque is not None:
        value += f', opaque="{chal["opaque"] if opaque == "from-challenge" else opaque}"'
    if qop:
        value += f', qop=auth, nc={nc:08x}, cnonce="{cnonce}"'
    return value


def _make(**kwargs: object) -> DigestAuthenticator:
    kwargs.setdefault("rng", random.Random(7))
    return DigestAuthenticator(REALM, SECRET, **kwargs)  # type: ignore[arg-type]


class CountingLookup:
    """The credential store, counting how often it is asked."""

    def __init__(self, users: dict[str, Credentials] = USERS) -> None:
        self.users = users
        self.calls = 0

    def __call__(self, username: str) -> Credentials | None:
        self.calls += 1
        return self.users.get(username)


def _verify(
    auth: DigestAuthenticator,
    header: str | None,
    now: float,
    *,
    method: str = "REGISTER",
    uri: str = URI,
    source: str = SOURCE,
    lookup: Callable[[str], Credentials | None] = USERS.get,
) -> AuthResult:
    return auth.verify(method, uri, header, lookup, now, source)


# ------------------------------------------------------------------------------------------------ RFC vectors


def test_rfc2617_section_3_5_example() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert ha1 == hashlib.md5(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()
    response = compute_response(
        ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    response = compute_response(
        ha1,
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "GET",
        "/dir/index.html",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == expected


def test_rfc7616_authorization_example_parses() -> None:
    value = (
        'Digest username="Mufasa",\t realm="http-auth@example.org", uri="/dir/index.html", '
        'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    scheme, params = parse_credentials(value)
    assert scheme == "digest"
    assert params["realm"] == "http-auth@example.org"
    assert params["nc"] == "00000001"
    assert params["algorithm"] == "SHA-256"
    assert len(params) == 10


def test_rfc2069_and_sess_forms() -> None:
    ha1 = compute_ha1("u", "r", "p")
    ha2 = hashlib.md5(b"REGISTER:sip:r").hexdigest()
    assert (
        compute_response(ha1, "n", "REGISTER", "sip:r") == hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    )
    sess_ha1 = hashlib.md5(f"{ha1}:n:c".encode()).hexdigest()
    expected = hashlib.md5(f"{sess_ha1}:n:00000001:c:auth:{ha2}".encode()).hexdigest()
    got = compute_response(
        ha1, "n", "REGISTER", "sip:r", algorithm="MD5-sess", qop="auth", nc="00000001", cnonce="c"
    )
    assert got == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithm": "SHA-512-256"},
        {"algorithm": "MD5", "qop": "auth-int"},
        {"algorithm": "SHA-256-sess"},  # -sess without qop has no cnonce to mix in
    ],
)
def test_compute_response_rejects(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        compute_response("0" * 32, "n", "REGISTER", "sip:r", **kwargs)  # type: ignore[arg-type]


def test_compute_ha1_unchanged() -> None:
    assert compute_ha1("alice", REALM, PASSWORD) == USERS["alice"].ha1_md5
    assert compute_ha1("alice", REALM, PASSWORD, "SHA-256") == USERS["alice"].ha1_sha256
    with pytest.raises(ValueError, match="unsupported"):
        compute_ha1("alice", REALM, PASSWORD, "SHA-1")


# ------------------------------------------------------------------------------------------------ challenges


def test_challenge_offers_sha256_then_md5_with_one_nonce() -> None:
    auth = _make()
    challenges = auth.challenge_headers(10.0)
    assert len(challenges) == 2
    first, second = (_challenge_params(c) for c in challenges)
    assert first["algorithm"] == "SHA-256" and second["algorithm"] == "MD5"
    for params in (first, second):
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert params["opaque"] == auth.opaque
        assert "stale" not in params
    assert first["nonce"] == second["nonce"]
    assert challenges[0] == (
        f'Digest realm="{REALM}", nonce="{first["nonce"]}", opaque="{auth.opaque}", '
        'algorithm=SHA-256, qop="auth"'
    )


def test_stale_challenge_carries_stale_true() -> None:
    challenges = _make().challenge_headers(10.0, stale=True)
    assert challenges and all(c.endswith(", stale=true") for c in challenges)


def test_nonce_layout_and_hmac() -> None:
    """nonce = b64url(ms | random | HMAC-SHA256(secret, prefix | ms | random)[:16]), no padding."""
    auth = _make()
    nonce = _challenge_params(auth.challenge_headers(12.3456)[0])["nonce"]
    assert len(nonce) == 43 and "=" not in nonce
    raw = base64.urlsafe_b64decode(nonce + "=")
    assert int.from_bytes(raw[:8], "big", signed=True) == 12345
    expected_tag = hmac.digest(
        SECRET, b"pbx-digest-nonce\x00" + REALM.encode() + b"\x00" + raw[:16], "sha256"
    )
    assert raw[16:] == expected_tag[:16]


def test_nonces_are_unique_and_rng_is_injected() -> None:
    counter_auth = _make(rng=None)
    nonces = {_challenge_params(counter_auth.challenge_headers(1.0)[0])["nonce"] for _ in range(100)}
    assert len(nonces) == 100
    same_a = _make(rng=random.Random(99)).challenge_headers(5.0)
    same_b = _make(rng=random.Random(99)).challenge_headers(5.0)
    assert same_a == same_b
    assert same_a != _make(rng=random.Random(98)).challenge_headers(5.0)


def test_realm_is_quoted_in_challenge() -> None:
    auth = DigestAuthenticator('we"ird\\realm', SECRET)
    assert auth.challenge_headers(0.0)[0].startswith('Digest realm="we\\"ird\\\\realm", nonce="')


@pytest.mark.parametrize(
    "kwargs",
    [
        {"algorithms": ()},
        {"algorithms": ("SHA-512-256",)},
        {"algorithms": ("md5",)},  # configuration uses the canonical spelling
        {"algorithms": ("MD5", "MD5")},
        {"max_tracked_nonces": 0},
        {"failure_limit": 0},
        {"max_tracked_sources": 0},
        {"nonce_ttl_s": 0.0},
        {"block_s": -1.0},
    ],
)
def test_constructor_rejects_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _make(**kwargs)


def test_constructor_rejects_short_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        DigestAuthenticator(REALM, b"short")


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip(algorithm: str) -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(100.0), algorithm)
    result = _verify(auth, _answer(chal), 101.0)
    assert result == AuthResult(OK, "alice", "")


@pytest.mark.parametrize("algorithm", ["SHA-256-sess", "MD5-sess"])
def test_round_trip_sess(algorithm: str) -> None:
    auth = _make(algorithms=(algorithm, "MD5"))
    chal = _pick(auth.challenge_headers(100.0), algorithm)
    assert _verify(auth, _answer(chal), 101.0).outcome is OK
    # A digest computed without the -sess step but labelled -sess is refused: the -sess HA1 really is used.
    base = algorithm.removesuffix("-sess")
    header = _answer(chal, algorithm=base, nc=2).replace(f"algorithm={base}", f"algorithm={algorithm}")
    assert _verify(auth, header, 101.0).outcome is FAILED


def test_algorithm_absent_means_md5() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    header = _answer(chal).replace(", algorithm=MD5", "")
    assert "algorithm" not in header
    assert _verify(auth, header, 1.0).outcome is OK


def test_case_insensitive_scheme_names_and_tokens() -> None:
    """RFC 7235 §2.1 scheme, RFC 3261 §7.3.1 parameter names and tokens (algorithm, qop) ignore case."""
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "SHA-256")
    header = _answer(chal, algorithm="sha-256")
    header = "dIGEST" + header.removeprefix("Digest").replace("username=", "UserName=").replace("nc=", "NC=")
    assert _verify(auth, header, 1.0).outcome is OK


def test_quoted_token_values_are_accepted() -> None:
    """Some clients (and python-requests) quote algorithm and qop; RFC 7235 §2.2 allows either form."""
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    header = _answer(chal).replace("algorithm=MD5", 'algorithm="MD5"').replace("qop=auth", 'qop="auth"')
    assert _verify(auth, header, 1.0).outcome is OK


def test_utf8_username_and_username_star() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "SHA-256")
    plain = _answer(chal, username="Jäsøn Doe")
    assert _verify(auth, plain, 1.0) == AuthResult(OK, "Jäsøn Doe")
    # RFC 7616 §3.4 / RFC 8187: username*=UTF-8''J%C3%A4s%C3%B8n%20Doe
    star = _answer(chal, username="Jäsøn Doe", nc=2).replace(
        'username="Jäsøn Doe"', "username*=UTF-8''J%C3%A4s%C3%B8n%20Doe"
    )
    assert _verify(auth, star, 1.0) == AuthResult(OK, "Jäsøn Doe")


def test_escaped_username() -> None:
    users = {'a"b\\c': _creds('a"b\\c')}
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    header = _answer(chal, username="PLACEHOLDER").replace('"PLACEHOLDER"', '"a\\"b\\\\c"')
    # The placeholder's digest is wrong, so recompute with the real name through the low-level function.
    nonce = chal["nonce"]
    response = compute_response(
        users['a"b\\c'].ha1_md5, nonce, "REGISTER", URI, qop="auth", nc="00000001", cnonce="0a4f113b"
    )
    header = re.sub(r'response="[0-9a-f]+"', f'response="{response}"', header)
    assert _verify(auth, header, 1.0, lookup=users.get) == AuthResult(OK, 'a"b\\c')


# ------------------------------------------------------------------------------------------------ failures


def test_wrong_password_fails() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "SHA-256")
    result = _verify(auth, _answer(chal, password="guess"), 1.0)
    assert result == AuthResult(FAILED, "alice", "wrong response")


def test_unknown_user_fails() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    lookup = CountingLookup()
    result = _verify(auth, _answer(chal, username="mallory"), 1.0, lookup=lookup)
    assert result == AuthResult(FAILED, "mallory", "unknown user")
    assert lookup.calls == 1


def test_response_for_another_method_or_uri_fails() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, method="INVITE"), 1.0).outcome is FAILED


def test_unencodable_text_is_malformed() -> None:
    """A lone surrogate (bytes the transport decoded with surrogateescape) cannot be hashed as UTF-8."""
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    header = _answer(chal).replace('cnonce="0a4f113b"', 'cnonce="\udcff"')
    assert "\udcff" in header
    assert _verify(auth, header, 1.0) == AuthResult(
        MALFORMED, None, "credentials contain unencodable characters"
    )


def test_non_ascii_and_uppercase_response_fail() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    good = _answer(chal)
    response = re.search(r'response="([0-9a-f]+)"', good)
    assert response is not None
    upper = good.replace(response.group(1), response.group(1).upper())
    assert _verify(auth, upper, 1.0).outcome is FAILED  # RFC 7616: request-digest is LHEX
    non_ascii = good.replace(response.group(1), "é" * 32)
    assert _verify(auth, non_ascii, 1.0).outcome is FAILED


def test_stale_nonce() -> None:
    auth = _make(nonce_ttl_s=300.0)
    chal = _pick(auth.challenge_headers(1000.0), "MD5")
    assert _verify(auth, _answer(chal), 1300.0).outcome is OK  # exactly the TTL is still fresh
    result = _verify(auth, _answer(chal, nc=2), 1300.002)
    assert result == AuthResult(STALE, "alice", "nonce expired")
    assert all("stale=true" in c for c in auth.challenge_headers(1300.002, stale=True))


def test_stale_nonce_with_wrong_password_is_failed() -> None:
    auth = _make(nonce_ttl_s=300.0)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, password="guess"), 10_000.0).outcome is FAILED


def test_tampered_nonce_fails() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(50.0), "MD5")
    nonce = chal["nonce"]
    # Change one character of the timestamp (characters 0-10 cover its 8 bytes): a forged nonce.
    flipped = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
    result = _verify(auth, _answer(chal, nonce=flipped), 51.0)
    assert result == AuthResult(FAILED, "alice", "nonce was not issued here")


@pytest.mark.parametrize(
    "nonce",
    ["", "x", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "A" * 43, "A" * 42 + "=", "+" * 43, "é" * 43, "A" * 44],
)
def test_foreign_or_garbage_nonce_fails(nonce: str) -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, nonce=nonce), 1.0).outcome is FAILED


def test_nonce_from_another_secret_or_realm_fails() -> None:
    other_secret = DigestAuthenticator(REALM, b"another secret, 32 bytes long...", rng=random.Random(7))
    chal = _pick(other_secret.challenge_headers(0.0), "MD5")
    assert _verify(_make(), _answer(chal, opaque=None), 1.0).outcome is FAILED
    other_realm = DigestAuthenticator("other.example.com", SECRET, rng=random.Random(7))
    chal = _pick(other_realm.challenge_headers(0.0), "MD5")
    assert _verify(_make(), _answer(chal, realm=REALM, opaque=None), 1.0).outcome is FAILED


def test_nonce_from_the_future_fails() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(100.0), "MD5")
    assert _verify(auth, _answer(chal), 99.0) == AuthResult(FAILED, "alice", "nonce from the future")


def test_opaque_mismatch_fails_and_absent_opaque_is_a_tolerance() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, opaque="not-ours"), 1.0).reason == "opaque does not match"
    assert _verify(auth, _answer(chal, opaque=None), 1.0).outcome is OK
    strict = _make(require_opaque=True)
    chal = _pick(strict.challenge_headers(0.0), "MD5")
    assert _verify(strict, _answer(chal, opaque=None), 1.0) == AuthResult(
        MALFORMED, None, "Digest opaque missing"
    )
    assert _verify(strict, _answer(chal), 1.0).outcome is OK


@pytest.mark.parametrize("algorithm", ["SHA-512-256", "SHA-1", "MD5-sess", "AKAv1-MD5"])
def test_unknown_or_unoffered_algorithm_fails_with_reason(algorithm: str) -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    header = _answer(chal).replace("algorithm=MD5", f"algorithm={algorithm}")
    result = _verify(auth, header, 1.0)
    assert result.outcome is FAILED
    assert algorithm in result.reason


def test_md5_refused_when_only_sha256_is_offered() -> None:
    auth = _make(algorithms=("SHA-256",))
    assert len(auth.challenge_headers(0.0)) == 1
    chal = _pick(auth.challenge_headers(0.0), "SHA-256")
    result = _verify(auth, _answer(chal, algorithm="MD5"), 1.0)
    assert result.outcome is FAILED and "MD5" in result.reason
    assert _verify(auth, _answer(chal, algorithm="MD5").replace(", algorithm=MD5", ""), 1.0).outcome is FAILED


def test_unsupported_qop_and_userhash_fail() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal).replace("qop=auth", "qop=auth-int"), 1.0).outcome is FAILED
    assert _verify(auth, _answer(chal) + ", userhash=true", 1.0).reason == "userhash was not offered"
    assert _verify(auth, _answer(chal) + ", userhash=false", 1.0).outcome is OK


# ------------------------------------------------------------------------------------------------ replay


def test_replayed_nc_fails_and_increasing_nc_succeeds() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "SHA-256")
    assert _verify(auth, _answer(chal, nc=1), 1.0).outcome is OK
    assert _verify(auth, _answer(chal, nc=1), 2.0) == AuthResult(FAILED, "alice", "nonce-count replayed")
    assert _verify(auth, _answer(chal, nc=2, cnonce="other"), 3.0).outcome is OK
    assert _verify(auth, _answer(chal, nc=5), 4.0).outcome is OK  # gaps are allowed, only growth matters
    assert _verify(auth, _answer(chal, nc=4), 5.0).outcome is FAILED
    assert _verify(auth, _answer(chal, nc=5), 6.0).outcome is FAILED
    assert _verify(auth, _answer(chal, nc=6), 7.0).outcome is OK


def test_failed_attempt_does_not_burn_the_nonce_count() -> None:
    """Only a correct response is recorded, so an attacker cannot push a client's nc out of reach."""
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, nc=0xFFFFFFF, password="guess"), 1.0).outcome is FAILED
    assert _verify(auth, _answer(chal, nc=1), 2.0).outcome is OK


def test_other_base64_spelling_of_a_nonce_is_the_same_nonce() -> None:
    """43 base64 characters carry 258 bits; the last 2 are ignored, so 4 spellings decode alike."""
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, nc=1), 1.0).outcome is OK
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    nonce = chal["nonce"]
    variant = nonce[:-1] + alphabet[alphabet.index(nonce[-1]) ^ 1]
    assert variant != nonce
    assert _verify(auth, _answer(chal, nc=1, nonce=variant), 2.0).outcome is FAILED


def test_rfc2069_nonce_is_good_once() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, qop=False), 1.0).outcome is OK
    reused = _verify(auth, _answer(chal, qop=False), 2.0)
    assert reused == AuthResult(STALE, "alice", "nonce already used")
    # ...and a qop=auth request cannot revive it either.
    assert _verify(auth, _answer(chal, nc=7), 3.0).outcome is STALE
    # A nonce first used with qop cannot then be used without it (that form carries no nc to check).
    other = _pick(auth.challenge_headers(4.0), "MD5")
    assert _verify(auth, _answer(other, nc=1), 5.0).outcome is OK
    assert _verify(auth, _answer(other, qop=False), 6.0).outcome is STALE


def test_rfc2069_tolerance_can_be_switched_off() -> None:
    auth = _make(allow_rfc2069=False)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal, qop=False), 1.0) == AuthResult(MALFORMED, None, "Digest qop missing")


# ------------------------------------------------------------------------------------------------ missing


@pytest.mark.parametrize(
    "header",
    [
        None,
        "NoOneKnowsThisScheme opaque-data=here",
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Bearer",
    ],
)
def test_no_digest_credentials_is_missing(header: str | None) -> None:
    assert _verify(_make(), header, 1.0).outcome is MISSING


def test_foreign_realm_is_missing() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    result = _verify(auth, _answer(chal, realm="elsewhere.example.org"), 1.0)
    assert result == AuthResult(MISSING, None, "credentials are for another realm")


# ------------------------------------------------------------------------------------------------ malformed


def _good_header() -> str:
    auth = _make()
    return _answer(_pick(auth.challenge_headers(0.0), "MD5"))


def _drop(param: str) -> str:
    return re.sub(rf',? ?\b{param}=("[^"]*"|[^,]*)', "", _good_header(), count=1)


MALFORMED_CASES: list[tuple[str, str]] = [
    ("", "empty credentials"),
    ("   \t ", "empty credentials"),
    ("Dig@st username=x", "malformed authentication scheme"),
    ("Digest username=", "malformed Digest parameters"),
    ('Digest username="alice', "malformed Digest parameters"),
    ('Digest username="alice",', "malformed Digest parameters"),
    ('Digest username="alice" realm="pbx.example.com"', "malformed Digest parameters"),
    ('Digest ,username="alice"', "malformed Digest parameters"),
    ('Digest username="alice",,realm="pbx.example.com"', "malformed Digest parameters"),
    ('Digest user name="alice"', "malformed Digest parameters"),
    ('Digest username="a", username="b"', "malformed Digest parameters"),
    ('Digest username="a", USERNAME="b"', "malformed Digest parameters"),
    ('Digest username="a\x00b"', "malformed Digest parameters"),
    ('Digest username="a\\', "malformed Digest parameters"),
    ('Digest username="a"\r\n, realm="b"', "malformed Digest parameters"),
    ("Digest uri=sip:pbx.example.com", "malformed Digest parameters"),
    ("Digest =x", "malformed Digest parameters"),
    ("Digest", "Digest realm missing"),
    ('Digest username="alice"', "Digest realm missing"),
    ('Digest realm="pbx.example.com"', "Digest username missing"),
    ("Digest " + "x" * 5000, "credentials too long"),
]


@pytest.mark.parametrize(("header", "reason"), MALFORMED_CASES)
def test_malformed_headers(header: str, reason: str) -> None:
    lookup = CountingLookup()
    result = _verify(_make(), header, 1.0, lookup=lookup)
    assert result == AuthResult(MALFORMED, None, reason)
    assert lookup.calls == 0


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: _drop("nonce"), "Digest nonce missing"),
        (lambda h: _drop("uri"), "Digest uri missing"),
        (lambda h: _drop("response"), "Digest response missing"),
        (lambda h: _drop("cnonce"), "Digest cnonce missing"),
        (lambda h: _drop("nc"), "Digest nc missing"),
        (lambda h: h.replace("nc=00000001", "nc=1"), "Digest nc is not 8 hex digits"),
        (lambda h: h.replace("nc=00000001", "nc=0000000g"), "Digest nc is not 8 hex digits"),
        (lambda h: h.replace("nc=00000001", "nc=+0000001"), "Digest nc is not 8 hex digits"),
        (lambda h: h.replace("nc=00000001", "nc=0x000001"), "Digest nc is not 8 hex digits"),
        (lambda h: h.replace("nc=00000001", "nc=0000_001"), "Digest nc is not 8 hex digits"),
        (lambda h: h.replace("nc=00000001", "nc=00000000"), "Digest nc must start at 00000001"),
        (lambda h: h.replace('username="alice"', "username*=latin-1''alice"), "malformed username*"),
        (lambda h: h.replace('username="alice"', "username*=UTF-8''%FF"), "malformed username*"),
        (lambda h: h + ", username*=UTF-8''alice", "both username and username* present"),
        (
            lambda h: h.replace(f'uri="{URI}"', 'uri="sip:other.example.com"'),
            "Digest uri does not match Request-URI",
        ),
    ],
)
def test_malformed_credentials(mutate: Callable[[str], str], reason: str) -> None:
    header = mutate(_good_header())
    assert _verify(_make(), header, 1.0) == AuthResult(MALFORMED, None, reason)


def test_sess_without_qop_is_malformed() -> None:
    auth = _make(algorithms=("MD5-sess",))
    chal = _pick(auth.challenge_headers(0.0), "MD5-sess")
    header = _answer(chal, algorithm="MD5", qop=False).replace("algorithm=MD5", "algorithm=MD5-sess")
    assert _verify(auth, header, 1.0) == AuthResult(MALFORMED, None, "-sess algorithm without qop")


def test_digest_uri_compared_after_stripping() -> None:
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    assert _verify(auth, _answer(chal), 1.0, uri=f"  {URI} ").outcome is OK


def test_malformed_does_not_count_as_failure() -> None:
    auth = _make(failure_limit=2)
    for _ in range(5):
        assert _verify(auth, "Digest garbage", 1.0).outcome is MALFORMED
    assert not auth.is_blocked(SOURCE, 1.0)


# ------------------------------------------------------------------------------------------------ parsing


def test_parse_credentials_grammar() -> None:
    scheme, params = parse_credentials(
        'DIGEST  Username = "bob" ,realm="a, b=c",nonce="x\\"y\\\\z",  qop = auth ,\tnc=00000001,uri="",'
        " x-extension=token"
    )
    assert scheme == "digest"
    assert params == {
        "username": "bob",
        "realm": "a, b=c",
        "nonce": 'x"y\\z',
        "qop": "auth",
        "nc": "00000001",
        "uri": "",
        "x-extension": "token",
    }


def test_parse_credentials_bare_scheme_and_utf8() -> None:
    assert parse_credentials("Digest") == ("digest", {})
    assert parse_credentials('Digest username="Jäsøn"') == ("digest", {"username": "Jäsøn"})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        '"Digest" a=b',
        "Digest a",
        "Digest a=",
        "Digest a=b c=d",
        "Digest a=b,",
        "Digest a=b,,c=d",
        'Digest a="b',
        'Digest a="b"c',
        'Digest a=b"c"',
        "Digest a=b, a=c",
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Digest a=é",
    ],
)
def test_parse_credentials_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_credentials(value)


def test_parse_rejects_long_hostile_input() -> None:
    """parse_credentials has no length cap; its anchored possessive patterns stay linear on 64 KiB."""
    for hostile in ("a" * 65536, 'a="' * 21845, "a=" * 32768, ",a=b" * 16384, 'a="\\"=' * 10000):
        with pytest.raises(ValueError):
            parse_credentials("Digest " + hostile)


_TOKENS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1
)
_QDTEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n\x7f"), max_size=20
).filter(lambda s: all(ch == "\t" or ord(ch) >= 0x20 for ch in s))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    params=st.dictionaries(_TOKENS.map(str.lower), st.one_of(_TOKENS, _QDTEXT.map(_quote)), max_size=8),
    spacing=st.sampled_from(["", " ", "\t", "  "]),
)
def test_parse_credentials_round_trip(params: dict[str, str], spacing: str) -> None:
    body = ("," + spacing).join(f"{name}{spacing}={spacing}{value}" for name, value in params.items())
    scheme, parsed = parse_credentials("Digest " + body)
    assert scheme == "digest"
    expected = {
        name: re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value
        for name, value in params.items()
    }
    assert parsed == expected


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_parse_credentials_fuzz(value: str) -> None:
    try:
        scheme, params = parse_credentials(value)
    except ValueError:
        return
    assert isinstance(scheme, str) and scheme == scheme.lower()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


_FUZZ_AUTH = _make()
_FUZZ_CHAL = _pick(_FUZZ_AUTH.challenge_headers(0.0), "MD5")
_FUZZ_GOOD = _answer(_FUZZ_CHAL, nc=0xFFFFFFFE)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.one_of(
        st.none(),
        st.text(max_size=300),
        st.text(max_size=200).map(lambda s: "Digest " + s),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "username",
                        "realm",
                        "nonce",
                        "uri",
                        "response",
                        "qop",
                        "nc",
                        "cnonce",
                        "algorithm",
                        "opaque",
                        "username*",
                        "userhash",
                        "x",
                    ]
                ),
                st.one_of(
                    _TOKENS, _QDTEXT.map(_quote), st.sampled_from([REALM, URI, "auth", "MD5", "00000001"])
                ),
            ),
            max_size=12,
        ).map(lambda items: "Digest " + ", ".join(f"{k}={v}" for k, v in items)),
        st.tuples(st.integers(0, len(_FUZZ_GOOD)), st.integers(0, 5), st.text(max_size=4)).map(
            lambda t: _FUZZ_GOOD[: t[0]] + t[2] + _FUZZ_GOOD[t[0] + t[1] :]
        ),
    ),
    now=st.floats(min_value=-1e6, max_value=1e9),
    source=st.sampled_from(["192.0.2.1", "192.0.2.2"]),
)
def test_verify_fuzz_never_raises(header: str | None, now: float, source: str) -> None:
    result = _FUZZ_AUTH.verify("REGISTER", URI, header, USERS.get, now, source)
    assert isinstance(result, AuthResult)
    assert isinstance(result.outcome, AuthOutcome)
    assert isinstance(result.reason, str)
    if result.outcome is OK:
        assert result.username == "alice"


# ------------------------------------------------------------------------------------------------ throttling


def test_failures_block_the_source_for_block_s() -> None:
    auth = _make(failure_limit=3, failure_window_s=60.0, block_s=120.0)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    bad = _answer(chal, password="guess")
    for i in range(3):
        assert _verify(auth, bad, 1.0 + i).outcome is FAILED
    assert auth.is_blocked(SOURCE, 3.0)
    assert not auth.is_blocked("198.51.100.7", 3.0)
    lookup = CountingLookup()
    fresh = _pick(auth.challenge_headers(3.0), "MD5")
    # Blocked: even the right password is refused, and no hashing or store lookup happens.
    result = _verify(auth, _answer(fresh), 4.0, lookup=lookup)
    assert result.outcome is BLOCKED
    assert lookup.calls == 0
    assert _verify(auth, None, 4.0).outcome is BLOCKED
    assert _verify(auth, _answer(fresh), 4.0, source="198.51.100.7").outcome is OK  # others unaffected
    assert _verify(auth, _answer(fresh, nc=2), 122.9).outcome is BLOCKED  # blocked at t=3 for 120 s
    assert auth.is_blocked(SOURCE, 122.9)
    assert not auth.is_blocked(SOURCE, 123.0)
    assert _verify(auth, _answer(fresh, nc=2), 123.0, lookup=lookup).outcome is OK
    assert lookup.calls == 1


def test_failures_outside_the_window_do_not_block() -> None:
    auth = _make(failure_limit=3, failure_window_s=60.0)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    bad = _answer(chal, password="guess")
    for now in (0.0, 30.0, 60.0, 61.0):  # the window opened at 0 closes at 60; a new one opens
        assert _verify(auth, bad, now).outcome is FAILED
    assert not auth.is_blocked(SOURCE, 61.0)
    assert _verify(auth, bad, 62.0).outcome is FAILED  # third failure of the window opened at 60
    assert auth.is_blocked(SOURCE, 62.0)


def test_success_neither_resets_the_count_nor_unblocks() -> None:
    auth = _make(failure_limit=3)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    bad = _answer(chal, username="bob", password="guess")
    assert _verify(auth, bad, 1.0).outcome is FAILED
    assert _verify(auth, bad, 2.0).outcome is FAILED
    assert _verify(auth, _answer(chal, nc=1), 3.0).outcome is OK
    assert _verify(auth, bad, 4.0).outcome is FAILED
    assert auth.is_blocked(SOURCE, 4.0)
    assert _verify(auth, _answer(chal, nc=2), 5.0).outcome is BLOCKED


@pytest.mark.parametrize(
    "header_for",
    [
        lambda chal: _answer(chal, password="guess"),
        lambda chal: _answer(chal, username="nobody"),
        lambda chal: _answer(chal, nonce="A" * 43),
    ],
)
def test_every_kind_of_failure_counts(header_for: Callable[[dict[str, str]], str]) -> None:
    auth = _make(failure_limit=2)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    _verify(auth, header_for(chal), 1.0)
    assert not auth.is_blocked(SOURCE, 1.0)
    _verify(auth, header_for(chal), 2.0)
    assert auth.is_blocked(SOURCE, 2.0)


def test_source_tables_are_bounded() -> None:
    auth = _make(failure_limit=3, max_tracked_sources=8)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    bad = _answer(chal, password="guess")
    for i in range(200):
        _verify(auth, bad, 1.0 + i * 0.01, source=f"10.0.{i // 256}.{i % 256}")
        assert auth.tracked_sources <= 8
    assert auth.tracked_sources == 8


def test_blocks_are_bounded_too() -> None:
    auth = _make(failure_limit=1, max_tracked_sources=8, block_s=1000.0)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    bad = _answer(chal, password="guess")
    for i in range(100):
        assert _verify(auth, bad, 1.0, source=f"10.1.0.{i}").outcome is FAILED
        assert auth.tracked_sources <= 8
    blocked = [i for i in range(100) if auth.is_blocked(f"10.1.0.{i}", 2.0)]
    assert blocked == list(range(92, 100))  # the newest blocks survive


def test_counts_are_evicted_before_blocks() -> None:
    auth = _make(failure_limit=2, max_tracked_sources=4, block_s=1000.0)
    chal = _pick(auth.challenge_headers(0.0), "MD5")
    bad = _answer(chal, password="guess")
    for _ in range(2):
        _verify(auth, bad, 1.0, source="attacker")
    assert auth.is_blocked("attacker", 1.0)
    for i in range(50):  # a flood of single failures from other sources
        _verify(auth, bad, 2.0, source=f"10.2.0.{i}")
    assert auth.is_blocked("attacker", 3.0)
    assert auth.tracked_sources <= 4


# ------------------------------------------------------------------------------------------------ nonce table


def test_nonce_table_is_bounded_and_evicted_nonces_are_never_replayable() -> None:
    auth = _make(max_tracked_nonces=4)
    challenges = [_pick(auth.challenge_headers(float(i)), "MD5") for i in range(20)]
    for i, chal in enumerate(challenges):
        assert _verify(auth, _answer(chal, nc=1), 20.0 + i).outcome is OK
        assert auth.tracked_nonces <= 4
    assert auth.tracked_nonces == 4
    # The first nonces were evicted: replaying their nc=1 (or using a higher nc) is refused, never OK.
    assert _verify(auth, _answer(challenges[0], nc=1), 50.0) == AuthResult(
        STALE, "alice", "nonce no longer tracked"
    )
    assert _verify(auth, _answer(challenges[0], nc=2), 50.0).outcome is STALE
    # Still tracked nonces keep working; fresh ones are accepted.
    assert _verify(auth, _answer(challenges[19], nc=2), 50.0).outcome is OK
    fresh = _pick(auth.challenge_headers(51.0), "MD5")
    assert _verify(auth, _answer(fresh), 52.0).outcome is OK


def test_lru_keeps_active_nonces() -> None:
    auth = _make(max_tracked_nonces=2)
    a, b, c = (_pick(auth.challenge_headers(float(i)), "MD5") for i in range(3))
    assert _verify(auth, _answer(a, nc=1), 10.0).outcome is OK
    assert _verify(auth, _answer(b, nc=1), 11.0).outcome is OK
    assert _verify(auth, _answer(a, nc=2), 12.0).outcome is OK  # a becomes the most recently used
    assert _verify(auth, _answer(c, nc=1), 13.0).outcome is OK  # evicts b, not a
    assert _verify(auth, _answer(a, nc=3), 14.0).outcome is OK
    assert _verify(auth, _answer(a, nc=3), 15.0).outcome is FAILED  # a is still tracked


# ------------------------------------------------------------------------------------------------ interop


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_cross_check_with_python_requests(algorithm: str) -> None:
    requests_auth = pytest.importorskip("requests.auth")
    auth = _make()
    chal = _pick(auth.challenge_headers(0.0), algorithm)
    client = requests_auth.HTTPDigestAuth("alice", PASSWORD)
    client.init_per_thread_state()
    client._thread_local.chal = dict(chal)
    for n in range(1, 3):  # requests counts nc up for a reused nonce
        header = client.build_digest_header("REGISTER", "http://pbx.example.com/dir/index.html")
        assert f"nc={n:08x}" in header
        assert _verify(auth, header, 1.0, uri="/dir/index.html") == AuthResult(OK, "alice")
    wrong = requests_auth.HTTPDigestAuth("alice", "guess")
    wrong.init_per_thread_state()
    wrong._thread_local.chal = dict(chal)
    header = wrong.build_digest_header("REGISTER", "http://pbx.example.com/dir/index.html")
    assert _verify(auth, header, 1.0, uri="/dir/index.html").outcome is FAILED


# ------------------------------------------------------------------------------------------------ purity


def test_module_is_sans_io() -> None:
    """STYLE 3.1: no clock, socket, loop, thread or OS randomness in the SIP core."""
    # The source, not ``auth_module.__file__``: that is the extension module when engine.sip is compiled.
    source = Path(engine.__file__).parent / "sip" / "auth.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = {"asyncio", "socket", "threading", "time", "os", "secrets", "uuid", "selectors", "uvloop"}
    assert not imported & forbidden
    runtime_random = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "random"
        and node.attr != "Random"
    ]
    assert not runtime_random

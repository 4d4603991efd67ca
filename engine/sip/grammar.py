"""RFC 3261 §25 grammar pieces: header-name table (compact forms), tokens, quoted strings, parameters, lists.

These are the small lexical helpers every header parser shares. They work on ``str`` (the parser decodes a
message head once, as UTF-8 with ``surrogateescape`` so that serialising it again gives the original bytes).
"""

from __future__ import annotations

import re
from typing import Final

#: RFC 3261 §7.3.3 and the compact forms registered since (RFC 3262/3265/3515/3892/4028/4474).
COMPACT_FORMS: Final[dict[str, str]] = {
    "i": "call-id",
    "m": "contact",
    "v": "via",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
}

#: How we spell header names we write (lower-case long form -> wire form). Others are title-cased.
CANONICAL_NAMES: Final[dict[str, str]] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
    "min-se": "Min-SE",
}

#: Headers whose values may be comma-joined lists (RFC 3261 §7.3.1). Authorization and the
#: *-Authenticate headers contain commas inside one value and are deliberately absent.
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "via", "contact", "route", "record-route", "path", "service-route", "allow", "supported",
        "require", "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "in-reply-to", "warning", "error-info", "call-info",
        "alert-info", "p-asserted-identity", "p-preferred-identity",
    }
)

_SPELLINGS: dict[str, str] = dict(CANONICAL_NAMES)


def canonical_name(name: str) -> str:
    """The wire spelling of a lower-case long header name (``call-id`` -> ``Call-ID``)."""
    known = _SPELLINGS.get(name)
    if known is None:
        known = "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
        if len(_SPELLINGS) < 1024 and len(name) <= 64:  # only our own names get here; bounded anyway
            _SPELLINGS[name] = known
    return known


_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def is_digits(text: str | bytes) -> bool:
    """True for a non-empty run of ASCII digits. (``str.isdigit`` also accepts "²" and other Unicode
    digits, which ``int()`` then rejects: every number read from the wire goes through this check.)"""
    return text.isascii() and text.isdigit()


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN_RE.fullmatch(text) is not None


def unquote(text: str) -> str:
    """Strip the quotes of a quoted-string and resolve its backslash escapes (§25.1 quoted-pair).

    Raises:
        ValueError: ``text`` is not one complete quoted-string.
    """
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("not a quoted string")
    body = text[1:-1]
    if "\\" not in body:
        if '"' in body:
            raise ValueError("unescaped quote inside a quoted string")
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("dangling backslash in a quoted string")
            out.append(body[i + 1])
            i += 2
            continue
        if ch == '"':
            raise ValueError("unescaped quote inside a quoted string")
        out.append(ch)
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """Quote ``text`` as a quoted-string, escaping backslashes and quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_unquoted(text: str, chars: str, start: int = 0) -> int:
    """Index of the first of ``chars`` outside quoted strings and ``<...>``, or -1.

    Raises:
        ValueError: a quoted string or an angle bracket is not closed.
    """
    if '"' not in text and "<" not in text:
        best = -1
        for ch in chars:
            pos = text.find(ch, start)
            if pos >= 0 and (best < 0 or pos < best):
                best = pos
        return best
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise ValueError("unbalanced quotes")
        elif ch == "<":
            close = text.find(">", i)
            if close < 0:
                raise ValueError("unclosed <")
            i = close
        elif ch in chars:
            return i
        i += 1
    return -1


def split_list(value: str) -> list[str]:
    """Split a comma-joined header value into its elements, respecting quotes and ``<...>``.

    Raises:
        ValueError: unbalanced quotes or brackets.
    """
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    parts: list[str] = []
    start = 0
    while True:
        pos = find_unquoted(value, ",", start)
        if pos < 0:
            part = value[start:].strip()
            if part:
                parts.append(part)
            return parts
        part = value[start:pos].strip()
        if part:
            parts.append(part)
        start = pos + 1


# One ";name[=value]" parameter. Possessive quantifiers (Python 3.11) keep matching linear: no whitespace run
# can be split between two parameters, so a long run of blanks cannot make the regex backtrack.
_PARAM: Final = (
    r"""\s*+;\s*+([A-Za-z0-9\-.!%*_+`'~]++)"""
    r"""(?:\s*+=\s*+("[^"\\]*+(?:\\.[^"\\]*+)*+"|[^\s;"<>,=]++))?+"""
)
_PARAM_RE: Final = re.compile(_PARAM)
_PARAMS_RE: Final = re.compile(f"(?:{_PARAM})*+\\s*+", re.S)


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` parameters (leading ``;`` optional); names lower-cased, order kept.

    Whitespace around ``;`` and ``=`` is allowed (§25.1 SEMI and EQUAL include LWS). A value is a token-like
    word or a quoted string; quoted values keep their quotes so that they serialise unchanged.

    Raises:
        ValueError: an empty or non-token parameter name, an empty value, unbalanced quotes, or a
            parameter given twice.
    """
    if not text or text.isspace():
        return {}
    if text.lstrip()[0] != ";":
        text = ";" + text
    if _PARAMS_RE.fullmatch(text) is None:
        raise ValueError(f"malformed parameters {text[:60]!r}")
    found = _PARAM_RE.findall(text)
    params = {name.lower(): (value or None) for name, value in found}
    if len(params) != len(found):
        # §19.1.1: "Any given URI parameter MUST NOT appear more than once"; a header parameter given twice
        # (two To tags, two Via branches) is as ambiguous, and Kamailio's sanity refuses duplicate tags.
        raise ValueError(f"parameter given twice in {text[:60]!r}")
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())

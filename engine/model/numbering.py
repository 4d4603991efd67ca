"""Public telephone numbers: reading DIDs from carriers, classifying what a line dialled, dial permissions.

Pure functions over Google's numbering metadata (the ``phonenumbers`` port of libphonenumber); no I/O.
The B2BUA uses them for carrier trunks (issue 3):

- ``normalize_did``: the E.164 form of the number a carrier put in the Request-URI or To user part, in
  whatever format that carrier uses, so it can be looked up among the company's numbers.
- ``classify_dialled``: what a phone on a line dialled (local, national, mobile, international,
  emergency or special-rate), completed to E.164 so it can go out via the trunk.
- ``permitted``: whether a line's dial permissions allow that class (the B2BUA answers 403 when not).
- ``national_format`` / ``e164_to_dial``: the digits to show on a phone or to send to a carrier.

Numbers are read with ASCII digits only; letters (vanity numbers, which ``phonenumbers`` would translate),
``*`` and ``#`` (feature codes) and pauses are refused rather than guessed at. The results are cached per
input, which is safe because every input and result is immutable.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType, ValidationResult, shortnumberinfo
from phonenumbers.phonenumber import CountryCodeSource

from engine.model.rules import E164_RE

MAX_E164_DIGITS: Final = 15
"""ITU-T E.164 §6: country code plus national significant number is at most 15 digits. The metadata for
some countries (DE) accepts longer numbers, which no carrier will route."""

MIN_LOCAL_DIGITS: Final = 4
"""The shortest subscriber number read as a local number (dialled without the area code). Three-digit
strings are left to extensions and short codes: an unassigned extension dialled by mistake should not
ring a stranger in the company's own area."""

_NOT_LOCAL_FIRST_DIGITS: Final = "01"
"""A local (subscriber) number starts with 2-9: 0 is the trunk or international prefix and 1 the range
of service codes (11x, 116xxx, 118xx, 19xxx in DE; 1xx in AT, CH, GB; N11 and the trunk prefix in NANP).
So ``1120`` is neither an emergency call nor a call to 030 1120."""
_CACHE_SIZE: Final = 4096
_TEL_SCHEME: Final = "tel:"
_NUMBER_RE: Final = re.compile(r"\+?[0-9().\- ]*[0-9][0-9().\- ]*")
_SEPARATORS_RE: Final = re.compile(r"[().\- ]")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_MAX_INPUT_CHARS: Final = 256
_TRUNK_PREFIX_OPTIONAL: Final = frozenset({1})
"""Country calling codes where a full national number is also dialled without the trunk prefix. In the
North American Numbering Plan the leading 1 is optional for ten-digit dialling, and area codes never
start with 0 or 1, so a bare ten-digit number is unambiguous there (in DE a bare number is a local one)."""


class DialClass(enum.StrEnum):
    """What kind of call a dialled number makes; the values are the dial-permission names.

    SPECIAL covers numbers whose price the caller cannot see or that cost more than a national call:
    premium rate, shared cost, personal numbers (DE 0700), UAN, voicemail access, pagers, and short
    codes that are not known to be free or standard rate (directory enquiries 118xx). Toll-free and
    VoIP numbers (GB 056, DE 032) cost at most a national call and count as NATIONAL.
    """

    INTERNAL = "internal"
    LOCAL = "local"
    NATIONAL = "national"
    MOBILE = "mobile"
    INTERNATIONAL = "international"
    EMERGENCY = "emergency"
    SPECIAL = "special"


_CLASS_BY_TYPE: Final[dict[int, DialClass]] = {
    PhoneNumberType.FIXED_LINE: DialClass.NATIONAL,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: DialClass.NATIONAL,
    PhoneNumberType.MOBILE: DialClass.MOBILE,
    PhoneNumberType.TOLL_FREE: DialClass.NATIONAL,
    PhoneNumberType.VOIP: DialClass.NATIONAL,
    PhoneNumberType.PREMIUM_RATE: DialClass.SPECIAL,
    PhoneNumberType.SHARED_COST: DialClass.SPECIAL,
    PhoneNumberType.PERSONAL_NUMBER: DialClass.SPECIAL,
    PhoneNumberType.PAGER: DialClass.SPECIAL,
    PhoneNumberType.UAN: DialClass.SPECIAL,
    PhoneNumberType.VOICEMAIL: DialClass.SPECIAL,
}
"""Number type -> class for a valid number of the company's own country. A type missing here (UNKNOWN,
or one a future ``phonenumbers`` adds) is SPECIAL, the class that needs the most trust."""

_LOCAL_TYPES: Final = frozenset({PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

_PERMISSION_FOR: Final[dict[DialClass, str]] = {
    DialClass.INTERNAL: "internal",
    DialClass.LOCAL: "local",
    DialClass.NATIONAL: "national",
    DialClass.MOBILE: "mobile",
    DialClass.INTERNATIONAL: "international",
    DialClass.SPECIAL: "international",
}
"""The permission each class needs. Lines know five permission names; SPECIAL numbers can cost as much as
an international call (premium rate, or worse), so they need the most trusted one, "international".
EMERGENCY needs none."""


@dataclass(frozen=True, slots=True)
class Dialled:
    """A dialled number, completed and classified.

    ``e164`` is the E.164 form (``+493023125100``), except for EMERGENCY and short codes (``112``,
    ``116117``), which only exist inside a country: there it is the short number as dialled, and the trunk
    gets it unchanged.
    """

    e164: str
    dial_class: DialClass


class TrunkNumberFormat(enum.StrEnum):
    """How a carrier wants numbers written (in the Request-URI, To, From, P-Asserted-Identity).

    E164 is ``+493023125100`` (RFC 3966 global number, what most SIP trunks take); E164_DIGITS is the same
    without ``+`` (``493023125100``); INTERNATIONAL uses the country's international prefix
    (``00493023125100``); NATIONAL is what a phone in the country dials (``03023125100``, and
    ``0044...`` for other countries).
    """

    E164 = "e164"
    E164_DIGITS = "e164_digits"
    INTERNATIONAL = "international"
    NATIONAL = "national"


def normalize_did(text: str, country: str) -> str | None:
    """The E.164 form of a number as a carrier delivers it, or None when it is not a phone number.

    Accepted: ``+493023125100``, ``493023125100``, ``00493023125100``, ``03023125100`` (national with
    trunk prefix, read in ``country``), ``tel:+49-30-23125100``, visual separators (``-``, ``.``, spaces,
    parentheses), ``%2B`` for ``+``, and URI parameters (``;npdi``, ``;rn=...``, ``;cic=...``), which are
    dropped: the DID is the number, not where number portability routed it. A ``phone-context`` that is a
    global number prefix (``23125100;phone-context=+4930``, RFC 3966 §5.1.5) is prepended; a domain
    context is ignored and the number read in ``country``.

    The number must be possible (right length for its country) but need not be valid by the metadata's
    number ranges: the result is only looked up among the company's own numbers, where an exact match
    decides, and requiring validity would refuse fictional test ranges (GB 07700 900xxx) and ranges newer
    than the installed metadata. A bare local number without its area code is read as a national number,
    as ``phonenumbers`` does; carriers deliver full numbers.

    Digits without ``+``: where national numbers always carry a trunk prefix (``0`` in DE, AT, CH, GB),
    digits that start neither with it nor with the international prefix are E.164 without the ``+``
    (``4917612345678``, ``442079460000``), never a national number without its trunk prefix, which
    carriers do not send. Elsewhere (NANP, IT) the national reading comes first and E.164 without ``+``
    is tried when that reading is impossible (``442079460000`` from a US carrier).

    Args:
        text: the decoded Request-URI or To user part, or a whole ``tel:`` URI.
        country: ISO 3166-1 alpha-2 code of the company (``DE``), used to read national formats.

    Returns:
        ``+`` followed by at most 15 digits, or None.

    Raises:
        ValueError: ``country`` is not a region ``phonenumbers`` knows.
    """
    return _normalize_did(text, _check_region(country))


def classify_dialled(digits: str, country: str, area_code: str | None) -> Dialled | None:
    """Complete and classify what a phone on a line dialled; None when it is not a number that can go out.

    The caller has already ruled out the company's extensions. In the order tried:

    1. ``+...`` (or a global ``phone-context``) is read as an international number.
    2. An emergency number of ``country``, matched exactly (``112``, ``110`` in DE; ``911`` in US;
       ``999`` or ``112`` in GB; ``1120`` is not one) is EMERGENCY.
    3. The country's international prefix (``00``; ``011`` in US) starts an international number.
    4. A number starting with the trunk prefix (``0``; ``1`` in NANP) is read as national; in countries
       without a trunk prefix (IT, ES) every number is.
    5. Other short codes the metadata knows are NATIONAL when known to be free or standard rate
       (``116117``), else SPECIAL (directory enquiries ``11880``, cost unknown).
    6. Anything else is a local number: with ``area_code`` given, at least ``MIN_LOCAL_DIGITS`` digits
       and a first digit from 2 to 9, the area code is put in front (``23125100`` -> ``+493023125100``).
       In NANP a bare ten-digit number is read as national too; elsewhere a local number without
       ``area_code`` is None.

    The number must then be valid by the metadata, since its type decides the class: a number of another
    country (by region, so Canada from the US and Jersey from GB are INTERNATIONAL, as are non-geographic
    +800 and +881 numbers) is INTERNATIONAL whatever its type; in the company's country mobile numbers
    are MOBILE, premium-rate and similar are SPECIAL (see ``DialClass``), fixed-line numbers whose
    national significant number starts with ``area_code`` are LOCAL (however they were dialled: with or
    without the area code, or in international form), and the rest is NATIONAL. Numbering plans are
    prefix-free, so the prefix test does not depend on the metadata's guess at area-code lengths.

    Args:
        digits: the Request-URI user part as dialled (decoded). Read like ``normalize_did`` reads its
            text (visual separators, ``tel:``, parameters), except that digits without ``+`` are
            never taken for an international number without its prefix.
        country: ISO 3166-1 alpha-2 code of the company (``DE``).
        area_code: the company's area code without the trunk prefix (``30`` for Berlin, ``212`` for
            Manhattan), or None. A leading trunk prefix ``0`` is tolerated where the trunk prefix is
            ``0`` (``030``), since national numbers there never start with 0.

    Returns:
        the completed number and its class, or None for anything that is not a complete number.

    Raises:
        ValueError: ``country`` is unknown to ``phonenumbers`` or ``area_code`` is not digits.
    """
    region = _check_region(country)
    return _classify_dialled(digits, region, _check_area_code(area_code, region))


def permitted(dial_class: DialClass, permissions: Collection[str]) -> bool:
    """Whether a line with ``permissions`` may place a call of ``dial_class``.

    EMERGENCY is always allowed. Each other class needs its own permission name; there is no hierarchy
    ("international" does not imply "national"), so a line can be limited to exactly what it should
    reach. SPECIAL needs "international" (see ``_PERMISSION_FOR``).

    Args:
        dial_class: the class from ``classify_dialled`` (or INTERNAL for an extension).
        permissions: the line's permission names (``internal``, ``local``, ``national``, ``mobile``,
            ``international``).

    Returns:
        True when the call may go ahead.

    Raises:
        Nothing.
    """
    if dial_class is DialClass.EMERGENCY:
        return True
    return _PERMISSION_FOR[dial_class] in permissions


def refusal_reason(dial_class: DialClass) -> str:
    """The reason phrase for the 403 when ``permitted`` says no (``"International calls not permitted"``).

    Args:
        dial_class: the class that was refused.

    Returns:
        a short phrase naming the class, for a SIP reason phrase and the CDR.

    Raises:
        Nothing.
    """
    what = {
        DialClass.INTERNAL: "Internal calls",
        DialClass.LOCAL: "Local calls",
        DialClass.NATIONAL: "National calls",
        DialClass.MOBILE: "Calls to mobile numbers",
        DialClass.INTERNATIONAL: "International calls",
        DialClass.EMERGENCY: "Emergency calls",
        DialClass.SPECIAL: "Premium-rate and special numbers",
    }[dial_class]
    return f"{what} not permitted"


def national_format(e164: str, country: str) -> str:
    """The digits a phone in ``country`` dials to reach ``e164``, without separators.

    ``+493023125100`` in DE is ``03023125100``; ``+442079460000`` in DE is ``00442079460000``;
    ``+12125551234`` in US is ``12125551234``. Phones show caller IDs in this form so that calling back
    from the call list dials the right number. A short number (``112``) is returned unchanged.

    Args:
        e164: a number in E.164 form, or a short number without ``+``.
        country: ISO 3166-1 alpha-2 code of the company.

    Returns:
        a string of ASCII digits.

    Raises:
        ValueError: ``country`` is unknown, or ``e164`` is neither E.164 nor a string of digits.
    """
    return e164_to_dial(e164, country, TrunkNumberFormat.NATIONAL)


def e164_to_dial(e164: str, country: str, style: TrunkNumberFormat = TrunkNumberFormat.E164) -> str:
    """``e164`` written the way a carrier wants it (see ``TrunkNumberFormat``).

    A short number (``112``, ``116117``; what ``Dialled.e164`` holds for EMERGENCY) has no international
    form and is returned unchanged in every style.

    Args:
        e164: a number in E.164 form (``+493023125100``), or a short number without ``+``.
        country: ISO 3166-1 alpha-2 code of the company; decides the prefixes for INTERNATIONAL/NATIONAL.
        style: the carrier's format; E164 by default.

    Returns:
        the number to send.

    Raises:
        ValueError: ``country`` is unknown, or ``e164`` is neither E.164 nor a string of digits.
    """
    return _e164_to_dial(e164, _check_region(country), TrunkNumberFormat(style))


def _check_region(country: str) -> str:
    region = country.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown country {country!r} (expected an ISO 3166-1 alpha-2 code such as 'DE')")
    return region


def _check_area_code(area_code: str | None, region: str) -> str | None:
    if area_code is None:
        return None
    text = _SEPARATORS_RE.sub("", area_code)
    if not _DIGITS_RE.fullmatch(text):
        raise ValueError(f"area code {area_code!r} is not digits")
    if _trunk_prefix(region) == "0" and text.startswith("0"):
        text = text[1:]
    if not text:
        raise ValueError(f"area code {area_code!r} is only a trunk prefix")
    return text


def _trunk_prefix(region: str) -> str | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return None if metadata is None else metadata.national_prefix


@dataclass(frozen=True, slots=True)
class _Parts:
    """A number text taken apart: digits, whether it started with ``+``, and a global phone-context."""

    digits: str
    plus: bool
    context: str | None


def _split(text: str) -> _Parts | None:
    """``tel:`` scheme, ``%2B``, parameters and visual separators removed; None for anything else."""
    if len(text) > _MAX_INPUT_CHARS:
        return None
    text = unquote(text).strip()
    if text[: len(_TEL_SCHEME)].lower() == _TEL_SCHEME:
        text = text[len(_TEL_SCHEME) :]
    number, _, params = text.partition(";")
    number = number.strip()
    if not _NUMBER_RE.fullmatch(number):
        return None
    context = None
    for param in params.split(";") if params else ():
        name, _, value = param.partition("=")
        if name.strip().lower() == "phone-context" and value.strip().startswith("+"):
            context = _SEPARATORS_RE.sub("", value.strip()[1:])
            if not _DIGITS_RE.fullmatch(context):
                return None
    plus = number.startswith("+")
    digits = _SEPARATORS_RE.sub("", number.removeprefix("+"))
    if plus and context is not None:
        context = None  # RFC 3966 §5.1.4: a global number carries no context; ignore a stray one.
    return _Parts(digits, plus, context)


def _parse(text: str, region: str) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return None


def _e164(number: PhoneNumber) -> str | None:
    """E.164 text of a number that is possible (not merely possible as a local number) and not too long."""
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # The metadata calls some too-short numbers possible (+98 0000: 6 digits, or a leading-zero national
    # number kept in the text): what the rest of the engine takes for E.164 is the one rule, E164_RE.
    return text if len(text) - 1 <= MAX_E164_DIGITS and E164_RE.fullmatch(text) else None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_did(text: str, region: str) -> str | None:
    parts = _split(text)
    if parts is None:
        return None
    if parts.context is not None:
        return _e164_of(_parse("+" + parts.context + parts.digits, region))
    if parts.plus or _without_plus(parts.digits, region):
        return _e164_of(_parse("+" + parts.digits, region))
    national = _e164_of(_parse(parts.digits, region))
    if national is None and not parts.digits.startswith("0"):
        return _e164_of(_parse("+" + parts.digits, region))
    return national


def _without_plus(digits: str, region: str) -> bool:
    """Whether carrier digits are an E.164 number without its ``+``: in a country where national numbers
    are always written with a trunk prefix, any number without it and without an international prefix.

    Carriers write either ``+49...``/``49...`` or ``0...``/``0049...``, never a national number without
    its trunk prefix. ``phonenumbers`` would read ``4917612345678`` as the (valid) national number
    (0)491 76... and ``442079460000`` as (0)4420 79...; we read +49 176... and +44 20....
    """
    trunk = _trunk_prefix(region)
    if not trunk or phonenumbers.country_code_for_region(region) in _TRUNK_PREFIX_OPTIONAL:
        return False
    return not digits.startswith(trunk)


def _e164_of(number: PhoneNumber | None) -> str | None:
    return None if number is None else _e164(number)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _classify_dialled(text: str, region: str, area: str | None) -> Dialled | None:
    parts = _split(text)
    if parts is None:
        return None
    if parts.context is not None:
        return _classify(_parse("+" + parts.context + parts.digits, region), region, area)
    if parts.plus:
        return _classify(_parse("+" + parts.digits, region), region, area)
    digits = parts.digits
    if shortnumberinfo.is_emergency_number(digits, region):
        return Dialled(digits, DialClass.EMERGENCY)
    number = _parse(digits, region)
    if number is not None and number.country_code_source == CountryCodeSource.FROM_NUMBER_WITH_IDD:
        return _classify(number, region, area)
    trunk = _trunk_prefix(region)
    if not trunk or digits.startswith(trunk):
        return _classify(number, region, area) or _classify_short(digits, number, region)
    short = _classify_short(digits, number, region)
    if short is not None:
        return short
    if area is not None and len(digits) >= MIN_LOCAL_DIGITS and digits[0] not in _NOT_LOCAL_FIRST_DIGITS:
        local = _classify(_parse(trunk + area + digits, region), region, area)
        if local is not None and local.dial_class is DialClass.LOCAL:
            return local
    if phonenumbers.country_code_for_region(region) in _TRUNK_PREFIX_OPTIONAL:
        return _classify(number, region, area)
    return None


def _classify_short(digits: str, number: PhoneNumber | None, region: str) -> Dialled | None:
    """A non-emergency short code of ``region`` (``116117``, ``11880``), matched exactly."""
    if number is None or not shortnumberinfo.is_valid_short_number_for_region(number, region):
        return None
    cost = shortnumberinfo.expected_cost_for_region(number, region)
    cheap = cost in (shortnumberinfo.ShortNumberCost.TOLL_FREE, shortnumberinfo.ShortNumberCost.STANDARD_RATE)
    return Dialled(digits, DialClass.NATIONAL if cheap else DialClass.SPECIAL)


def _classify(number: PhoneNumber | None, region: str, area: str | None) -> Dialled | None:
    if number is None or not phonenumbers.is_valid_number(number):
        return None
    e164 = _e164(number)
    if e164 is None:
        return None
    if phonenumbers.region_code_for_number(number) != region:
        return Dialled(e164, DialClass.INTERNATIONAL)
    kind = phonenumbers.number_type(number)
    if (
        kind in _LOCAL_TYPES
        and area is not None
        and phonenumbers.national_significant_number(number).startswith(area)
    ):
        return Dialled(e164, DialClass.LOCAL)
    return Dialled(e164, _CLASS_BY_TYPE.get(kind, DialClass.SPECIAL))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _e164_to_dial(e164: str, region: str, style: TrunkNumberFormat) -> str:
    if _DIGITS_RE.fullmatch(e164):
        return e164
    number = _parse(e164, region) if e164.startswith("+") and _DIGITS_RE.fullmatch(e164[1:]) else None
    if number is None:
        raise ValueError(f"{e164!r} is not an E.164 number")
    canonical = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if style is TrunkNumberFormat.E164:
        return canonical
    if style is TrunkNumberFormat.E164_DIGITS:
        return canonical[1:]
    if style is TrunkNumberFormat.INTERNATIONAL:
        return _international_prefix(region) + canonical[1:]
    dialled = phonenumbers.format_out_of_country_calling_number(number, region)
    return "".join(ch for ch in dialled if "0" <= ch <= "9")


def _international_prefix(region: str) -> str:
    """The prefix a phone in ``region`` dials before a country code (``00``; ``011`` in NANP).

    Metadata gives a pattern where a country has several carriers' prefixes (AU); its preferred prefix
    is then the one to use.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        raise ValueError(f"no numbering metadata for {region!r}")
    if metadata.preferred_international_prefix:
        return metadata.preferred_international_prefix.replace("~", "")
    prefix = metadata.international_prefix or ""
    if not _DIGITS_RE.fullmatch(prefix):
        raise ValueError(f"{region} has no single international prefix")
    return prefix

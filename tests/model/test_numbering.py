"""Public numbers: DID normalisation, classification of dialled numbers, dial permissions, trunk formats.

The tables are real-world formats per country. German numbers use the drama range 030 23125 xxx (as in
config/example-company.yaml); other countries use ranges the numbering metadata accepts as valid.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.model.numbering import (
    MAX_E164_DIGITS,
    DialClass,
    Dialled,
    TrunkNumberFormat,
    classify_dialled,
    e164_to_dial,
    national_format,
    normalize_did,
    permitted,
    refusal_reason,
)

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
ALL_PERMISSIONS = frozenset({"internal", "local", "national", "mobile", "international"})

# --- normalize_did -------------------------------------------------------------------------------------

DID_FORMATS = [
    # DE: every form German carriers use for the example company's main number.
    ("+493023125100", "DE", "+493023125100"),
    ("493023125100", "DE", "+493023125100"),
    ("00493023125100", "DE", "+493023125100"),
    ("03023125100", "DE", "+493023125100"),
    ("tel:+49-30-23125100", "DE", "+493023125100"),
    ("TEL:+49.30.23125100", "DE", "+493023125100"),
    ("+49 30 23125 100", "DE", "+493023125100"),
    ("+49 (30) 23125-100", "DE", "+493023125100"),
    ("+49 (0)30 23125 204", "DE", "+493023125204"),
    ("%2B493023125204", "DE", "+493023125204"),
    ("%2b493023125204", "DE", "+493023125204"),
    ("+493023125100;npdi", "DE", "+493023125100"),
    ("+493023125100;rn=+4930999;npdi", "DE", "+493023125100"),
    ("tel:+493023125100;cic=+49123", "DE", "+493023125100"),
    ("  +493023125100  ", "DE", "+493023125100"),
    ("23125100;phone-context=+49-30", "DE", "+493023125100"),
    ("tel:23125100;phone-context=+4930", "DE", "+493023125100"),
    ("+4917612345678", "DE", "+4917612345678"),
    ("017612345678", "DE", "+4917612345678"),
    ("4917612345678", "DE", "+4917612345678"),  # also valid as (0)491 76..., but carriers keep the 0
    ("442079460000", "DE", "+442079460000"),  # not (0)4420 79460000
    ("442079460000", "US", "+442079460000"),  # impossible in NANP, so E.164 without +
    # AT
    ("+4315012345", "AT", "+4315012345"),
    ("015012345", "AT", "+4315012345"),
    ("0043 1 5012345", "AT", "+4315012345"),
    ("06641234567", "AT", "+436641234567"),
    # CH
    ("+41446681800", "CH", "+41446681800"),
    ("044 668 18 00", "CH", "+41446681800"),
    ("0041446681800", "CH", "+41446681800"),
    ("41446681800", "CH", "+41446681800"),
    ("41791234567", "CH", "+41791234567"),
    # GB: the Ofcom drama range is not valid by the metadata but must still normalise.
    ("+442079460000", "GB", "+442079460000"),
    ("020 7946 0000", "GB", "+442079460000"),
    ("00442079460000", "GB", "+442079460000"),
    ("+44 (0)20 7946 0000", "GB", "+442079460000"),
    ("07700900123", "GB", "+447700900123"),
    ("+447700900123", "DE", "+447700900123"),
    # US
    ("+12125551234", "US", "+12125551234"),
    ("12125551234", "US", "+12125551234"),
    ("2125551234", "US", "+12125551234"),
    ("(212) 555-1234", "US", "+12125551234"),
    ("212.555.1234", "US", "+12125551234"),
    ("011 49 30 23125100", "US", "+493023125100"),
    # A number of another country in a carrier's international form, read anywhere.
    ("0033142685300", "DE", "+33142685300"),
    ("+33142685300", "US", "+33142685300"),
]


@pytest.mark.parametrize(("text", "country", "expected"), DID_FORMATS)
def test_normalize_did_formats(text: str, country: str, expected: str) -> None:
    assert normalize_did(text, country) == expected


NOT_DIDS = [
    "",
    " ",
    "+",
    "tel:",
    "tel:+",
    "abc",
    "anonymous",
    "1-800-FLOWERS",  # vanity letters are not translated
    "+49301234a",
    "*98",
    "#31#03023125100",
    "03023125100#",
    "1" * 40,
    "+" + "4" * 16,
    "+4930231251000000",  # 16 digits: accepted by DE metadata, too long for E.164
    "0302312510000000",
    "112",  # a short number only possible locally
    "0049",
    "+4930",
    "49",
    "0",
    "+49 30 23125 100 ext. 5",
    "+49+3023125100",
    "\uff10\uff13\uff10\uff12\uff13\uff11\uff12\uff15\uff11\uff10\uff10",  # fullwidth digits: ASCII only
    "23125100;phone-context=+49x30",
    "sip:+493023125100@carrier.example",
    "3023125100",  # national without trunk prefix: read as +30 23125100, which is impossible
]


@pytest.mark.parametrize("text", NOT_DIDS)
def test_normalize_did_refuses_garbage(text: str) -> None:
    assert normalize_did(text, "DE") is None


def test_normalize_did_reads_domain_context_in_country() -> None:
    # A domain phone-context says nothing about the number's prefix: read it as the country would.
    assert normalize_did("tel:03023125100;phone-context=carrier.example", "DE") == "+493023125100"


def test_normalize_did_accepts_lower_case_country() -> None:
    assert normalize_did("03023125100", "de") == "+493023125100"


def test_normalize_did_unknown_country_raises() -> None:
    with pytest.raises(ValueError, match="unknown country 'XX'"):
        normalize_did("+493023125100", "XX")


def test_normalize_did_overlong_input_is_none() -> None:
    assert normalize_did("+49 " + " " * 300 + "3023125100", "DE") is None


def test_normalize_did_too_short_for_e164_is_none() -> None:
    # Hypothesis found these: the metadata calls +98 0000 possible, and GB's reading kept "0098..." as text
    for text in ("+980000", "980000", "0098 0000"):
        assert normalize_did(text, "GB") is None, text


@given(st.text(max_size=60))
def test_normalize_did_any_text_is_e164_or_none(text: str) -> None:
    result = normalize_did(text, "DE")
    assert result is None or E164.fullmatch(result)


@given(st.from_regex(r"\+?[0-9 ()./-]{0,24}", fullmatch=True))
def test_normalize_did_number_like_text_is_e164_or_none(text: str) -> None:
    result = normalize_did(text, "GB")
    assert result is None or (E164.fullmatch(result) and len(result) - 1 <= MAX_E164_DIGITS)


# --- classify_dialled -----------------------------------------------------------------------------------

L, N, M, INTL, E, S = (
    DialClass.LOCAL,
    DialClass.NATIONAL,
    DialClass.MOBILE,
    DialClass.INTERNATIONAL,
    DialClass.EMERGENCY,
    DialClass.SPECIAL,
)

DIALLED = [
    # DE, company in Berlin (area code 30)
    ("23125100", "DE", "30", "+493023125100", L),
    ("23125100", "DE", "030", "+493023125100", L),  # trunk prefix tolerated in the area code
    ("03023125100", "DE", "30", "+493023125100", L),
    ("+493023125100", "DE", "30", "+493023125100", L),
    ("00493023125100", "DE", "30", "+493023125100", L),
    ("030 23125-204", "DE", "30", "+493023125204", L),
    ("03023125100", "DE", None, "+493023125100", N),
    ("0891234567", "DE", "30", "+49891234567", N),
    ("+49891234567", "DE", "30", "+49891234567", N),
    ("0331 1234567", "DE", "30", "+493311234567", N),  # Potsdam: 033... does not start with 30
    ("08001234567", "DE", "30", "+498001234567", N),  # toll-free
    ("017612345678", "DE", "30", "+4917612345678", M),
    ("+4917612345678", "DE", "30", "+4917612345678", M),
    ("0049 151 12345678", "DE", None, "+4915112345678", M),
    ("09001234567", "DE", "30", "+499001234567", S),  # premium rate
    ("0180512345", "DE", "30", "+49180512345", S),  # shared cost
    ("070012345678", "DE", "30", "+4970012345678", S),  # personal number
    ("+442079460000", "DE", "30", "+442079460000", INTL),
    ("00442079460000", "DE", "30", "+442079460000", INTL),
    ("+447400123456", "DE", "30", "+447400123456", INTL),  # a UK mobile is international from DE
    ("00301234567890", "DE", "30", None, None),  # +30 (Greece) with too many digits
    ("0030 21 0123 4567", "DE", "30", "+302101234567", INTL),
    ("+4315012345", "DE", "30", "+4315012345", INTL),
    ("+80012345678", "DE", "30", "+80012345678", INTL),  # non-geographic freephone
    ("+881612345678", "DE", "30", "+881612345678", INTL),  # satellite
    ("112", "DE", "30", "112", E),
    ("110", "DE", None, "110", E),
    ("116117", "DE", "30", "116117", N),  # medical on-call service, free
    ("11880", "DE", "30", "11880", S),  # directory enquiries
    # AT, company in Vienna (area code 1)
    ("5012345", "AT", "1", "+4315012345", L),
    ("015012345", "AT", "1", "+4315012345", L),
    ("0316 123456", "AT", "1", "+43316123456", N),
    ("06641234567", "AT", "1", "+436641234567", M),
    ("0900 123456", "AT", "1", "+43900123456", S),
    ("00493023125100", "AT", "1", "+493023125100", INTL),
    ("133", "AT", "1", "133", E),
    ("112", "AT", None, "112", E),
    # CH, company in Zurich (area code 44)
    ("0446681800", "CH", "44", "+41446681800", L),
    ("6681800", "CH", "44", "+41446681800", L),
    ("0316681800", "CH", "44", "+41316681800", N),
    ("0791234567", "CH", "44", "+41791234567", M),
    ("0900 123 456", "CH", "44", "+41900123456", S),
    ("+493023125100", "CH", "44", "+493023125100", INTL),
    ("144", "CH", "44", "144", E),
    ("112", "CH", "44", "112", E),
    # GB, company in London (area code 20)
    ("79460000", "GB", "20", "+442079460000", L),
    ("020 7946 0000", "GB", "20", "+442079460000", L),
    ("0117 123 4567", "GB", "20", "+441171234567", N),
    ("07400 123456", "GB", "20", "+447400123456", M),
    ("09001234567", "GB", "20", "+449001234567", S),
    ("03000123456", "GB", "20", "+443000123456", S),  # UAN
    ("05601234567", "GB", "20", "+445601234567", N),  # VoIP
    ("0800 123 4567", "GB", "20", "+448001234567", N),
    ("07781123456", "GB", "20", "+447781123456", INTL),  # Guernsey mobile: another region
    ("00493023125100", "GB", "20", "+493023125100", INTL),
    ("999", "GB", "20", "999", E),
    ("112", "GB", None, "112", E),
    ("07700900123", "GB", "20", None, None),  # drama range: not a real mobile number
    # US, company in Manhattan (area code 212)
    ("5551234", "US", "212", "+12125551234", L),
    ("2125551234", "US", "212", "+12125551234", L),
    ("12125551234", "US", "212", "+12125551234", L),
    ("(212) 555-1234", "US", "212", "+12125551234", L),
    ("4155552671", "US", "212", "+14155552671", N),
    ("14155552671", "US", None, "+14155552671", N),
    ("18005551234", "US", "212", "+18005551234", N),  # toll-free
    ("011 49 30 23125100", "US", "212", "+493023125100", INTL),
    ("+14165550123", "US", "212", "+14165550123", INTL),  # Canada: another region in NANP
    ("18765551234", "US", "212", "+18765551234", INTL),  # Jamaica: the classic NANP toll-fraud target
    ("911", "US", "212", "911", E),
    ("112", "US", None, "112", E),
    # IT has no trunk prefix: the leading 0 belongs to the number.
    ("0612345678", "IT", "06", "+390612345678", L),
    ("0212345678", "IT", "06", "+390212345678", N),
    ("3123456789", "IT", "06", "+393123456789", M),
]


@pytest.mark.parametrize(("digits", "country", "area", "e164", "dial_class"), DIALLED)
def test_classify_dialled(
    digits: str, country: str, area: str | None, e164: str | None, dial_class: DialClass | None
) -> None:
    expected = None if e164 is None or dial_class is None else Dialled(e164, dial_class)
    assert classify_dialled(digits, country, area) == expected


NOT_DIALLABLE = [
    ("", "DE", "30"),
    ("+", "DE", "30"),
    ("*98", "DE", "30"),  # voicemail feature code: the caller handles those
    ("*31#03023125100", "DE", "30"),
    ("abc", "DE", "30"),
    ("0800FLOWERS", "DE", "30"),
    ("1" * 40, "DE", "30"),
    ("0" * 40, "DE", "30"),
    ("1120", "DE", "30"),  # not emergency, and 1 starts no local number
    ("0112", "DE", "30"),
    ("123", "DE", "30"),  # too short for a local number: left to extensions
    ("299", "DE", "30"),
    ("23125100", "DE", None),  # local without a known area code
    ("5551234", "US", None),
    ("0301", "DE", "30"),  # too short even as a national number
    ("0302312510000000", "DE", "30"),  # longer than E.164 allows
    ("0049", "DE", "30"),
    ("00", "DE", "30"),
    ("+4930", "DE", "30"),
    ("070012345", "DE", "30"),  # 0700 needs eight digits
]


@pytest.mark.parametrize(("digits", "country", "area"), NOT_DIALLABLE)
def test_classify_dialled_refuses(digits: str, country: str, area: str | None) -> None:
    assert classify_dialled(digits, country, area) is None


def test_local_number_in_national_form_without_area_code_is_national() -> None:
    # Whether a national-format number is LOCAL depends only on the company's area code.
    with_area = classify_dialled("03023125100", "DE", "30")
    without_area = classify_dialled("03023125100", "DE", None)
    assert with_area is not None and with_area.dial_class is DialClass.LOCAL
    assert without_area is not None and without_area.dial_class is DialClass.NATIONAL
    assert with_area.e164 == without_area.e164


def test_area_code_does_not_make_mobile_local() -> None:
    # Area code 17 is not one, but the rule must hold anyway: only fixed-line numbers are LOCAL.
    result = classify_dialled("017612345678", "DE", "17")
    assert result == Dialled("+4917612345678", DialClass.MOBILE)


def test_international_form_of_own_area_is_local() -> None:
    assert classify_dialled("+49 30 23125 100", "DE", "30") == Dialled("+493023125100", DialClass.LOCAL)


def test_global_phone_context_completes_dialled_number() -> None:
    assert classify_dialled("23125100;phone-context=+4930", "DE", None) == Dialled(
        "+493023125100", DialClass.NATIONAL
    )
    assert classify_dialled("23125100;phone-context=+4930", "DE", "30") == Dialled(
        "+493023125100", DialClass.LOCAL
    )


def test_emergency_needs_exact_match() -> None:
    assert classify_dialled("112", "DE", "30") == Dialled("112", DialClass.EMERGENCY)
    assert classify_dialled("911", "DE", "30") is None
    assert classify_dialled("999", "US", None) is None


def test_classify_unknown_country_raises() -> None:
    with pytest.raises(ValueError, match="unknown country"):
        classify_dialled("03023125100", "ZZ", None)


@pytest.mark.parametrize("area", ["3O", "", "0", "+49"])
def test_classify_bad_area_code_raises(area: str) -> None:
    with pytest.raises(ValueError, match="area code"):
        classify_dialled("03023125100", "DE", area)


def test_classify_is_cached_and_stable() -> None:
    first = classify_dialled("0891234567", "DE", "30")
    assert first is classify_dialled("0891234567", "DE", "30")
    assert first == Dialled("+49891234567", DialClass.NATIONAL)


def test_dialled_is_frozen() -> None:
    result = Dialled("+493023125100", DialClass.LOCAL)
    with pytest.raises(AttributeError):
        result.e164 = "+4930"  # type: ignore[misc]


@given(st.text(max_size=40), st.sampled_from(["DE", "AT", "CH", "GB", "US"]), st.sampled_from([None, "30"]))
def test_classify_any_text_gives_dialled_or_none(text: str, country: str, area: str | None) -> None:
    result = classify_dialled(text, country, area)
    assert result is None or isinstance(result.dial_class, DialClass)
    short_classes = (DialClass.EMERGENCY, DialClass.NATIONAL, DialClass.SPECIAL)
    if result is not None and result.dial_class not in short_classes:
        assert E164.fullmatch(result.e164)


@given(st.from_regex(r"\+?[0-9]{0,18}", fullmatch=True), st.sampled_from(["DE", "GB", "US"]))
def test_classify_digit_strings_e164_or_short(digits: str, country: str) -> None:
    result = classify_dialled(digits, country, "20")
    if result is None:
        return
    if result.e164.startswith("+"):
        assert E164.fullmatch(result.e164)
    else:
        # Short numbers keep the digits as dialled, and only emergency and short-code classes have them.
        assert result.e164 == digits
        assert result.dial_class in (DialClass.EMERGENCY, DialClass.NATIONAL, DialClass.SPECIAL)


# --- permitted -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("permissions", [frozenset(), ALL_PERMISSIONS, ["internal"]])
def test_emergency_always_permitted(permissions: frozenset[str]) -> None:
    assert permitted(DialClass.EMERGENCY, permissions)


@pytest.mark.parametrize(
    "dial_class",
    [DialClass.INTERNAL, DialClass.LOCAL, DialClass.NATIONAL, DialClass.MOBILE, DialClass.INTERNATIONAL],
)
def test_each_class_needs_its_own_permission(dial_class: DialClass) -> None:
    assert permitted(dial_class, {dial_class.value})
    assert not permitted(dial_class, ALL_PERMISSIONS - {dial_class.value})
    assert not permitted(dial_class, ())


def test_no_permission_hierarchy() -> None:
    assert not permitted(DialClass.NATIONAL, {"international"})
    assert not permitted(DialClass.LOCAL, {"national"})
    assert not permitted(DialClass.MOBILE, {"national", "local"})


def test_special_needs_international() -> None:
    assert permitted(DialClass.SPECIAL, {"international"})
    assert not permitted(DialClass.SPECIAL, {"internal", "local", "national", "mobile"})
    assert not permitted(DialClass.SPECIAL, {"special"})


def test_default_line_permissions_against_dialled_numbers() -> None:
    line = frozenset({"internal", "local", "national", "mobile"})
    decisions = {
        digits: permitted(dialled.dial_class, line)
        for digits in ("23125100", "0891234567", "017612345678", "00442079460000", "09001234567", "112")
        if (dialled := classify_dialled(digits, "DE", "30")) is not None
    }
    assert decisions == {
        "23125100": True,
        "0891234567": True,
        "017612345678": True,
        "00442079460000": False,
        "09001234567": False,
        "112": True,
    }


def test_refusal_reasons_name_the_class() -> None:
    assert refusal_reason(DialClass.INTERNATIONAL) == "International calls not permitted"
    assert refusal_reason(DialClass.SPECIAL) == "Premium-rate and special numbers not permitted"
    assert len({refusal_reason(c) for c in DialClass}) == len(DialClass)


def test_dial_class_values_are_permission_names() -> None:
    names = {c.value for c in DialClass} - {"emergency", "special"}
    assert names == ALL_PERMISSIONS


# --- national_format / e164_to_dial -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "country", "expected"),
    [
        ("+493023125100", "DE", "03023125100"),
        ("+4917612345678", "DE", "017612345678"),
        ("+442079460000", "DE", "00442079460000"),
        ("+493023125100", "US", "011493023125100"),
        ("+12125551234", "US", "12125551234"),
        ("+442079460000", "GB", "02079460000"),
        ("+4315012345", "AT", "015012345"),
        ("+41446681800", "CH", "0446681800"),
        ("+390612345678", "IT", "0612345678"),
        ("112", "DE", "112"),
    ],
)
def test_national_format(e164: str, country: str, expected: str) -> None:
    assert national_format(e164, country) == expected


@pytest.mark.parametrize(
    ("style", "expected_de", "expected_foreign"),
    [
        (TrunkNumberFormat.E164, "+493023125100", "+442079460000"),
        (TrunkNumberFormat.E164_DIGITS, "493023125100", "442079460000"),
        (TrunkNumberFormat.INTERNATIONAL, "00493023125100", "00442079460000"),
        (TrunkNumberFormat.NATIONAL, "03023125100", "00442079460000"),
    ],
)
def test_e164_to_dial_styles(style: TrunkNumberFormat, expected_de: str, expected_foreign: str) -> None:
    assert e164_to_dial("+493023125100", "DE", style) == expected_de
    assert e164_to_dial("+442079460000", "DE", style) == expected_foreign


def test_e164_to_dial_default_is_e164_and_accepts_style_names() -> None:
    assert e164_to_dial("+493023125100", "DE") == "+493023125100"
    assert e164_to_dial("+493023125100", "DE", "national") == "03023125100"  # type: ignore[arg-type]


def test_e164_to_dial_uses_the_countrys_international_prefix() -> None:
    assert e164_to_dial("+493023125100", "US", TrunkNumberFormat.INTERNATIONAL) == "011493023125100"
    assert e164_to_dial("+493023125100", "AU", TrunkNumberFormat.INTERNATIONAL) == "0011493023125100"
    assert e164_to_dial("+493023125100", "RU", TrunkNumberFormat.INTERNATIONAL) == "810493023125100"


@pytest.mark.parametrize("style", list(TrunkNumberFormat))
def test_e164_to_dial_passes_short_numbers(style: TrunkNumberFormat) -> None:
    assert e164_to_dial("112", "DE", style) == "112"


@pytest.mark.parametrize("bad", ["", "+", "+49 30 23125100", "03023125100x", "tel:+493023125100", "+49a"])
def test_e164_to_dial_refuses_non_e164(bad: str) -> None:
    with pytest.raises(ValueError, match=r"not an E\.164 number"):
        e164_to_dial(bad, "DE")


def test_round_trip_dialled_to_trunk_and_back() -> None:
    # What goes out to the carrier reads back as the same number when the carrier echoes it in To.
    for digits in ("23125100", "0891234567", "017612345678", "00442079460000"):
        dialled = classify_dialled(digits, "DE", "30")
        assert dialled is not None
        for style in TrunkNumberFormat:
            assert normalize_did(e164_to_dial(dialled.e164, "DE", style), "DE") == dialled.e164

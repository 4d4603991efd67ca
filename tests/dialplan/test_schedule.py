"""Schedules: weekly blocks, midnight crossing, DST in Europe/Berlin and America/New_York, overrides,
holiday ranges with times, recurring holidays and country calendars; all with fixed clocks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from engine.dialplan.errors import PlanUsageError
from engine.dialplan.schedule import Schedule
from engine.model.entities import Company

from .helpers import BERLIN, NEW_YORK, UTC, compile_errors, compile_ok, paths

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def schedule(company: Company | None = None, **fields: Any) -> Schedule:
    raw = {"name": "s", **fields}
    kwargs: dict[str, Any] = {} if company is None else {"company": company}
    config = compile_ok(plans={}, objects={"schedules": [raw]}, numbers=(), **kwargs)
    return config.schedules["s"]


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc,arg-type]


def test_weekly_blocks_open_and_closed() -> None:
    s = schedule(open=[{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}])
    assert s.is_open(berlin(2026, 3, 11, 8, 0))  # Wednesday
    assert s.is_open(berlin(2026, 3, 11, 17, 59, 59))
    assert not s.is_open(berlin(2026, 3, 11, 18, 0))  # end is exclusive
    assert not s.is_open(berlin(2026, 3, 11, 7, 59))
    assert not s.is_open(berlin(2026, 3, 14, 10, 0))  # Saturday


def test_lunch_break_as_two_blocks_and_24_00_end() -> None:
    s = schedule(
        open=[
            {"days": ["mon"], "from": "08:00", "to": "12:00"},
            {"days": ["mon"], "from": "13:00", "to": "24:00"},
        ]
    )
    assert s.is_open(berlin(2026, 3, 9, 11, 0))
    assert not s.is_open(berlin(2026, 3, 9, 12, 30))
    assert s.is_open(berlin(2026, 3, 9, 23, 59, 59))
    assert not s.is_open(berlin(2026, 3, 10, 0, 0))


def test_block_crossing_midnight_belongs_to_the_next_day_after_midnight() -> None:
    s = schedule(open=[{"days": ["fri", "sun"], "from": "22:00", "to": "06:00"}])
    assert s.is_open(berlin(2026, 3, 13, 23, 0))  # Friday night
    assert s.is_open(berlin(2026, 3, 14, 5, 59))  # Saturday early
    assert not s.is_open(berlin(2026, 3, 14, 6, 0))
    assert not s.is_open(berlin(2026, 3, 13, 21, 59))
    assert not s.is_open(berlin(2026, 3, 15, 1, 0))  # Sunday early: Saturday has no block
    assert s.is_open(berlin(2026, 3, 16, 1, 0))  # Monday early: Sunday's block wraps into Monday


def test_evaluated_in_the_schedule_zone_whatever_the_zone_of_at() -> None:
    s = schedule(open=[{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}], timezone="America/New_York")
    # 15:30 in Berlin is 09:30 (EST, both zones on winter time) in New York.
    assert s.is_open(berlin(2026, 1, 14, 15, 30))
    assert not s.is_open(berlin(2026, 1, 14, 14, 30))


def test_company_zone_is_the_default() -> None:
    company = Company(name="NY Inc", timezone="America/New_York", country="US")
    s = schedule(company, open=[{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}])
    assert s.zone.key == "America/New_York"
    assert s.is_open(datetime(2026, 1, 14, 14, 30, tzinfo=UTC))  # 09:30 EST
    assert not s.is_open(datetime(2026, 1, 14, 13, 30, tzinfo=UTC))  # 08:30 EST


def test_berlin_spring_forward_block_across_the_missing_hour() -> None:
    # 2026-03-29 (Sunday) 02:00 CET -> 03:00 CEST. The block 01:00-03:30 is 1.5 real hours that day.
    s = schedule(open=[{"days": ["sun"], "from": "01:00", "to": "03:30"}])
    day = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 00:00 CET on the 29th
    assert not s.is_open(day + timedelta(minutes=59))  # 00:59 CET
    assert s.is_open(day + timedelta(hours=1))  # 01:00 CET
    assert s.is_open(day + timedelta(hours=1, minutes=59))  # 01:59 CET
    assert s.is_open(day + timedelta(hours=2))  # 03:00 CEST (02:00 never happens)
    assert s.is_open(day + timedelta(hours=2, minutes=29))  # 03:29 CEST
    assert not s.is_open(day + timedelta(hours=2, minutes=30))  # 03:30 CEST
    open_minutes = sum(s.is_open(day + timedelta(minutes=m)) for m in range(24 * 60))
    assert open_minutes == 90


def test_berlin_fall_back_repeated_hour_is_open_twice() -> None:
    # 2026-10-25 (Sunday) 03:00 CEST -> 02:00 CET: 02:00-02:59 happens twice.
    s = schedule(open=[{"days": ["sun"], "from": "02:00", "to": "02:30"}])
    assert s.is_open(datetime(2026, 10, 25, 0, 15, tzinfo=UTC))  # 02:15 CEST
    assert not s.is_open(datetime(2026, 10, 25, 0, 45, tzinfo=UTC))  # 02:45 CEST
    assert s.is_open(datetime(2026, 10, 25, 1, 15, tzinfo=UTC))  # 02:15 CET, the second pass
    assert not s.is_open(datetime(2026, 10, 25, 1, 45, tzinfo=UTC))
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST on the 25th
    assert sum(s.is_open(start + timedelta(minutes=m)) for m in range(25 * 60)) == 60


def test_new_york_dst_start_keeps_wall_clock_hours() -> None:
    # US DST starts 2026-03-08 (Sunday) 02:00 EST -> 03:00 EDT: 12:30 UTC is 07:30 before, 08:30 after.
    s = schedule(open=[{"days": ["sun"], "from": "08:00", "to": "09:00"}], timezone="America/New_York")
    assert not s.is_open(datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    assert s.is_open(datetime(2026, 3, 8, 12, 30, tzinfo=UTC))
    assert s.is_open(datetime(2026, 3, 1, 13, 30, tzinfo=UTC))
    assert not s.is_open(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    # the same wall time in New York's own zone object
    assert s.is_open(datetime(2026, 3, 8, 8, 0, tzinfo=NEW_YORK))


def test_new_york_fall_back_and_block_over_the_gap() -> None:
    # 2026-11-01 (Sunday) 02:00 EDT -> 01:00 EST: 01:00-01:59 twice. A 00:30-01:30 block is
    # open 00:30-01:30 EDT and again 01:00-01:30 EST: 90 real minutes.
    s = schedule(open=[{"days": ["sun"], "from": "00:30", "to": "01:30"}], timezone="America/New_York")
    start = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    assert sum(s.is_open(start + timedelta(minutes=m)) for m in range(25 * 60)) == 90
    assert s.is_open(datetime(2026, 11, 1, 6, 15, tzinfo=UTC))  # 01:15 EST, the second pass


def test_overrides() -> None:
    blocks = [{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}]
    always_open = schedule(open=blocks, override="open", holidays=[{"from": "2026-03-11"}])
    always_closed = schedule(open=blocks, override="closed")
    assert always_open.is_open(berlin(2026, 3, 15, 3, 0))  # Sunday night
    assert always_open.is_open(berlin(2026, 3, 11, 10, 0))  # beats the holiday
    assert not always_closed.is_open(berlin(2026, 3, 11, 10, 0))
    assert schedule(open=blocks, override="none").is_open(berlin(2026, 3, 11, 10, 0))


def test_holiday_date_range_forces_closed() -> None:
    s = schedule(
        open=[{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}],
        holidays=[{"name": "Christmas", "from": "2026-12-24", "to": "2026-12-26"}],
    )
    assert not s.is_open(berlin(2026, 12, 24, 10, 0))  # Thursday
    assert not s.is_open(berlin(2026, 12, 25, 17, 0))
    assert s.is_open(berlin(2026, 12, 23, 10, 0))
    assert s.is_open(berlin(2026, 12, 28, 10, 0))  # Monday after


def test_holiday_with_times() -> None:
    s = schedule(
        open=[{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}],
        holidays=[
            {"from": "2026-11-10", "from_time": "14:00", "to": "2026-11-11", "to_time": "10:00"},
            {"from": "2026-12-31", "from_time": "12:00"},
        ],
    )
    assert s.is_open(berlin(2026, 11, 10, 13, 59))
    assert not s.is_open(berlin(2026, 11, 10, 14, 0))
    assert not s.is_open(berlin(2026, 11, 11, 9, 59))
    assert s.is_open(berlin(2026, 11, 11, 10, 0))
    assert s.is_open(berlin(2026, 12, 31, 11, 59))
    assert not s.is_open(berlin(2026, 12, 31, 12, 0))


def test_unquoted_yaml_dates_are_accepted() -> None:
    from datetime import date

    s = schedule(
        open=[{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}], holidays=[{"from": date(2026, 3, 11)}]
    )
    assert not s.is_open(berlin(2026, 3, 11, 10, 0))


def test_recurring_holidays_every_year() -> None:
    s = schedule(
        open=[{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}],
        recurring_holidays=[{"name": "Christmas", "month": 12, "day": 25}, {"month": 2, "day": 29}],
    )
    assert not s.is_open(berlin(2030, 12, 25, 10, 0))  # Wednesday
    assert s.is_open(berlin(2030, 12, 24, 10, 0))
    assert not s.is_open(berlin(2028, 2, 29, 10, 0))  # leap day, Tuesday


def test_country_calendar_with_subdivision() -> None:
    blocks = [{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}]
    berlin_cal = schedule(open=blocks, holiday_calendar={"country": "DE", "subdivision": "BE"})
    germany = schedule(open=blocks, holiday_calendar={"country": "DE"})
    assert not berlin_cal.is_open(berlin(2026, 5, 1, 10, 0))  # Labour Day, Friday
    assert not germany.is_open(berlin(2026, 5, 1, 10, 0))
    # International Women's Day is a holiday in Berlin only (Monday 2027-03-08)
    assert not berlin_cal.is_open(berlin(2027, 3, 8, 10, 0))
    assert germany.is_open(berlin(2027, 3, 8, 10, 0))


def test_naive_datetime_is_refused() -> None:
    s = schedule(open=[{"days": WEEKDAYS, "from": "08:00", "to": "18:00"}])
    with pytest.raises(PlanUsageError, match="timezone-aware"):
        s.is_open(datetime(2026, 3, 11, 10, 0))


@pytest.mark.parametrize(
    ("fields", "path", "text"),
    [
        ({"timezone": "Mars/Olympus"}, "schedules[s].timezone", "unknown time zone"),
        (
            {"open": [{"days": ["mo"], "from": "08:00", "to": "18:00"}]},
            "schedules[s].open[0].days",
            "unknown day",
        ),
        ({"open": [{"days": [], "from": "08:00", "to": "18:00"}]}, "schedules[s].open[0].days", "non-empty"),
        ({"open": [{"days": ["mon"], "from": "8:00", "to": "18:00"}]}, "schedules[s].open[0].from", "HH:MM"),
        ({"open": [{"days": ["mon"], "from": "08:00", "to": "25:00"}]}, "schedules[s].open[0].to", "HH:MM"),
        ({"open": [{"days": ["mon"], "from": "24:00", "to": "06:00"}]}, "schedules[s].open[0].from", "HH:MM"),
        (
            {"open": [{"days": ["mon"], "from": "08:00", "to": "08:00"}]},
            "schedules[s].open[0].to",
            "empty block",
        ),
        (
            {"open": [{"days": ["mon"], "from": "08:00", "to": "09:00", "x": 1}]},
            "schedules[s].open[0].x",
            "unknown",
        ),
        ({"open": "always"}, "schedules[s].open", "must be a list"),
        ({"override": "sometimes"}, "schedules[s].override", "none, open or closed"),
        ({"holidays": [{"from": "2026-02-30"}]}, "schedules[s].holidays[0].from", "YYYY-MM-DD"),
        (
            {"holidays": [{"from": "2026-12-24", "to": "2026-12-20"}]},
            "schedules[s].holidays[0]",
            "ends before",
        ),
        (
            {"holidays": [{"from": "2026-12-24", "from_time": "noon"}]},
            "schedules[s].holidays[0].from_time",
            "HH:MM",
        ),
        (
            {"recurring_holidays": [{"month": 2, "day": 30}]},
            "schedules[s].recurring_holidays[0].day",
            "no day",
        ),
        (
            {"recurring_holidays": [{"month": 13, "day": 1}]},
            "schedules[s].recurring_holidays[0].month",
            "1-12",
        ),
        ({"holiday_calendar": {"country": "XX"}}, "schedules[s].holiday_calendar", "XX"),
        ({"holiday_calendar": {"country": "DE", "subdivision": "ZZ"}}, "schedules[s].holiday_calendar", "ZZ"),
        ({"colour": "blue"}, "schedules[s].colour", "unknown field"),
    ],
)
def test_schedule_errors_name_the_field(fields: dict[str, Any], path: str, text: str) -> None:
    result = compile_errors(plans={}, objects={"schedules": [{"name": "s", **fields}]}, numbers=())
    assert path in paths(result)
    assert any(text in e.message for e in result.errors if e.path == path), [str(e) for e in result.errors]


def test_all_schedule_errors_are_collected() -> None:
    raw = {
        "name": "s",
        "timezone": "Nowhere/City",
        "open": [{"days": ["xyz"], "from": "99:00", "to": "18:00"}],
        "override": "maybe",
    }
    result = compile_errors(plans={}, objects={"schedules": [raw]}, numbers=())
    assert set(paths(result)) >= {
        "schedules[s].timezone",
        "schedules[s].open[0].days",
        "schedules[s].open[0].from",
        "schedules[s].override",
    }

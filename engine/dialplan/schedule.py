"""Compiled schedules: is a schedule open at a given instant?

A schedule is evaluated on the wall clock of its own time zone (the company's by default), read with
``zoneinfo``. Weekly open blocks, holidays and overrides are all wall-clock values, so DST needs no special
case: ``at.astimezone(zone)`` gives the local wall time, and a block 01:00-03:30 on the spring-forward day
(Europe/Berlin, 02:00 -> 03:00) is open from 01:00 CET to 03:30 CEST, 1.5 real hours; in the repeated
autumn hour both passes of 02:30 are inside it. Blocks may cross midnight ("22:00"-"06:00"): the part
after midnight belongs to the next day of the week.

Precedence: ``override`` (open/closed) first, then holidays (force closed), then the weekly blocks.

Country/region calendars come from the ``holidays`` package. They are expanded per year on first use and
memoised in a module-level cache keyed by (country, subdivision, year): a pure function's memo (the same
input always gives the same dates), so compiled schedules stay immutable values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

import holidays

from engine.dialplan.errors import PlanUsageError

DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SECONDS_PER_DAY: Final = 86_400

Override = Literal["none", "open", "closed"]


@dataclass(frozen=True, slots=True)
class HolidayRange:
    """Closed from ``start`` to ``end`` (local wall-clock, naive datetimes, end exclusive)."""

    name: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class HolidayCalendar:
    """A public-holiday calendar of the ``holidays`` package: ISO country code and optional subdivision."""

    country: str
    subdivision: str | None = None

    def dates(self, year: int) -> frozenset[date]:
        return _calendar_dates(self.country, self.subdivision, year)


@functools.lru_cache(maxsize=4096)
def _calendar_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


def check_calendar(country: str, subdivision: str | None) -> str | None:
    """Return None if the ``holidays`` package knows the calendar, else why not (for the compiler)."""
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except (NotImplementedError, KeyError, ValueError) as exc:
        return str(exc) or f"unknown holiday calendar {country}/{subdivision}"
    return None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A compiled schedule.

    ``week`` holds, per weekday (Monday = 0), the open intervals as (start, end) seconds since local
    midnight, end exclusive, sorted and merged; blocks crossing midnight are already split across days.
    """

    name: str
    zone: ZoneInfo
    week: tuple[tuple[tuple[int, int], ...], ...]
    override: Override = "none"
    holidays: tuple[HolidayRange, ...] = ()
    recurring: frozenset[tuple[int, int]] = frozenset()
    calendar: HolidayCalendar | None = None

    def is_open(self, at: datetime) -> bool:
        """Whether the schedule is open at the instant ``at``.

        Args:
            at: a timezone-aware datetime (any zone; it is converted to the schedule's).
        Returns:
            True if open.
        Raises:
            PlanUsageError: ``at`` is naive (a wall time without a zone names no instant).
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise PlanUsageError("Schedule.is_open needs a timezone-aware datetime")
        if self.override == "open":
            return True
        if self.override == "closed":
            return False
        local = at.astimezone(self.zone)
        if self.closed_for_holiday(local):
            return False
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(start <= second < end for start, end in self.week[local.weekday()])

    def closed_for_holiday(self, local: datetime) -> bool:
        """Whether a holiday closes the schedule at ``local`` (already in the schedule's zone)."""
        day = local.date()
        if (day.month, day.day) in self.recurring:
            return True
        if self.calendar is not None and day in self.calendar.dates(day.year):
            return True
        if self.holidays:
            wall = local.replace(tzinfo=None, fold=0)
            return any(h.start <= wall < h.end for h in self.holidays)
        return False


def build_week(blocks: list[tuple[tuple[int, ...], int, int]]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Turn open blocks (weekdays, from, to in seconds; ``to`` <= ``from`` crosses midnight) into the
    per-weekday interval table of ``Schedule.week``."""
    days: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for weekdays, start, end in blocks:
        for wd in weekdays:
            if end > start:
                days[wd].append((start, end))
            else:
                if start < SECONDS_PER_DAY:
                    days[wd].append((start, SECONDS_PER_DAY))
                if end > 0:
                    days[(wd + 1) % 7].append((0, end))
    return tuple(_merge(d) for d in days)


def _merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def holiday_range(
    name: str, first: date, last: date, from_time: time | None, to_time: time | None
) -> HolidayRange:
    """A holiday from ``first`` (at ``from_time``, default midnight) to ``last`` (until ``to_time``,
    default the end of that day)."""
    start = datetime.combine(first, from_time or time(0))
    end = (
        datetime.combine(last, to_time)
        if to_time is not None
        else datetime.combine(last + timedelta(days=1), time(0))
    )
    return HolidayRange(name, start, end)

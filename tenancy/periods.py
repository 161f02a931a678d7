"""Budget periods: where the current day, week, month (or all time) begins and ends in an org's time zone.
Pure functions, for the pages, the reconciliation and the request path alike."""

from __future__ import annotations

import datetime
import zoneinfo

DAY, WEEK, MONTH, TOTAL = "day", "week", "month", "total"
PERIODS = (DAY, WEEK, MONTH, TOTAL)

# A total budget never resets: its period is all of time.
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
FAR_FUTURE = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC)


def zone(tz_name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `tz_name` (ValueError naming it when unknown)."""
    try:
        return zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"Unknown time zone {tz_name!r}: use an IANA name such as UTC or Europe/Paris.") from exc


def _midnight(day: datetime.date, tz: zoneinfo.ZoneInfo) -> datetime.datetime:
    # fold=0 puts a midnight that falls in a DST gap on the transition itself (the first instant of that day) and
    # a midnight that happens twice on its first occurrence; the round trip through UTC settles the wall time.
    return datetime.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(datetime.UTC).astimezone(tz)


def period_bounds(period: str, tz_name: str, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """The period holding `now` (aware), as [start, end) in the zone `tz_name`: a calendar day, an ISO week
    (from Monday), a calendar month, or for `total` all of time (EPOCH, FAR_FUTURE, in UTC). Days are 23 or 25
    hours long across DST changes."""
    if now.tzinfo is None:
        raise ValueError("period_bounds needs an aware datetime.")
    if period == TOTAL:
        return EPOCH, FAR_FUTURE
    tz = zone(tz_name)
    today = now.astimezone(tz).date()
    if period == DAY:
        first, after = today, today + datetime.timedelta(days=1)
    elif period == WEEK:
        first = today - datetime.timedelta(days=today.weekday())
        after = first + datetime.timedelta(days=7)
    elif period == MONTH:
        first = today.replace(day=1)
        after = (first + datetime.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"Unknown budget period {period!r}: one of {', '.join(PERIODS)}.")
    return _midnight(first, tz), _midnight(after, tz)

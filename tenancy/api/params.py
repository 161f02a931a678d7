"""Query parameters checked against what the database can hold: a value Python parses but PostgreSQL refuses
(a time-zone offset of +22:00, a 30-digit number) is a field error for the caller, never a 500."""

from __future__ import annotations

import datetime

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from rest_framework import exceptions

# PostgreSQL refuses a displacement past 15:59 although Python's datetime takes up to 23:59, and no time zone
# in use is past ±14:00.
MAX_OFFSET = datetime.timedelta(hours=15, minutes=59)
OFFSET_ERROR = "Enter a valid date/time with a time-zone offset between -15:59 and +15:59."
RANGE_ERROR = "Enter a date/time between the years 1 and 9999 once converted to UTC."
# The widest integer column (bigint); ids and positions are plain integers well inside it.
MAX_INT = 2**63 - 1


def storable_datetime(value: datetime.datetime) -> datetime.datetime:
    """`value` in UTC, so the query carries no offset; ValueError (with the message for the caller) when its
    offset is past what PostgreSQL takes or the instant has no UTC date inside Python's years."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise ValueError(OFFSET_ERROR)
    try:
        return value.astimezone(datetime.UTC)
    except OverflowError:
        raise ValueError(RANGE_ERROR) from None


class StorableIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return storable_datetime(parsed)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date/time filter whose value the database is sure to take (see `storable_datetime`)."""

    field_class = StorableIsoDateTimeField


def int_param(value: str | None, name: str, *, message: str) -> int | None:
    """A non-negative integer query parameter, None when absent or empty; a field error for anything else,
    including digits `int()` refuses ('²') and numbers too large for a database column."""
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_INT:
        raise exceptions.ValidationError({name: [message]})
    return int(value)

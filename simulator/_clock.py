"""Simulated time: float seconds since the epoch (UTC), and working hours in a person's time zone.

The working day starts at 09:00 local time, Monday to Friday, and lasts as many hours as the person's
weekly capacity allows (capacity / 5). Offsets are fixed for the run (no daylight-saving changes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
WORK_START_H = 9.0


def monday_of(moment: datetime) -> float:
    """The Monday 00:00 UTC at or before ``moment``, in epoch seconds."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day - timedelta(days=day.weekday())).timestamp()


def to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _local_day(t: float, offset_h: float) -> tuple[int, float]:
    """(local day number since the epoch, seconds into that local day)."""
    local = t + offset_h * HOUR
    day = int(local // DAY)
    return day, local - day * DAY


def is_workday(day: int) -> bool:
    return (day + 3) % 7 < 5  # 1970-01-01 was a Thursday (weekday 3)


def work_window(day: int, offset_h: float, hours_per_day: float) -> tuple[float, float]:
    """UTC start and end of the working window of a local day."""
    start = day * DAY + WORK_START_H * HOUR - offset_h * HOUR
    return start, start + hours_per_day * HOUR


def add_work_hours(t: float, hours: float, offset_h: float, hours_per_day: float) -> float:
    """The moment when ``hours`` of work started at ``t`` are done, counting only working time."""
    day, _ = _local_day(t, offset_h)
    left = hours * HOUR
    while True:
        if is_workday(day):
            start, end = work_window(day, offset_h, hours_per_day)
            begin = max(t, start)
            if begin < end:
                if begin + left <= end:
                    return begin + left
                left -= end - begin
        day += 1


def next_work_time(t: float, offset_h: float, hours_per_day: float) -> float:
    """``t`` if it is within working hours, else the start of the next working window."""
    return add_work_hours(t, 0.0, offset_h, hours_per_day)


def workdays(week_start: float) -> range:
    """UTC day numbers of Monday..Friday of the week starting at ``week_start``."""
    first = int(week_start // DAY)
    return range(first, first + 5)

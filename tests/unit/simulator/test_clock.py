"""Working time in a person's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulator._clock import HOUR, add_work_hours, monday_of, next_work_time

MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def test_monday_of_goes_back_to_monday_midnight() -> None:
    assert monday_of(datetime(2026, 1, 8, 15, 30, tzinfo=UTC)) == MONDAY


def test_work_is_counted_only_in_the_working_window() -> None:
    start = MONDAY + 9 * HOUR  # 09:00 UTC, offset 0, 8 h a day
    assert add_work_hours(start, 4, 0, 8) == start + 4 * HOUR
    assert add_work_hours(start, 10, 0, 8) == MONDAY + 24 * HOUR + 11 * HOUR  # Tuesday 11:00


def test_weekends_are_skipped() -> None:
    friday_4pm = MONDAY + 4 * 24 * HOUR + 16 * HOUR
    assert add_work_hours(friday_4pm, 2, 0, 8) == MONDAY + 7 * 24 * HOUR + 10 * HOUR  # next Monday 10:00


@pytest.mark.parametrize("offset", [-8, 0, 5, 11])
def test_next_work_time_lands_at_nine_local(offset: int) -> None:
    t = next_work_time(MONDAY + 20 * HOUR, offset, 8)
    local = datetime.fromtimestamp(t + offset * HOUR, UTC)
    assert t >= MONDAY + 20 * HOUR or local.hour < 17
    assert 9 <= local.hour < 17 and local.weekday() < 5

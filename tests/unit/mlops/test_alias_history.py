"""The previous champion is found by replaying the recorded alias moves (rollbacks pop)."""

from __future__ import annotations

from mesh.models import AliasMove, previous_champion


def move(version: str, previous: str | None, action: str = "promote") -> AliasMove:
    return AliasMove("champion", version, previous, action, "t", "2026-01-01T00:00:00+00:00")


def test_previous_champion_replays_promotions_and_rollbacks() -> None:
    history = [move("1", None), move("2", "1"), move("4", "2")]
    assert previous_champion(history, "4") == "2"
    history.append(move("2", "4", "rollback"))
    assert previous_champion(history, "2") == "1"
    history.append(move("1", "2", "rollback"))
    assert previous_champion(history, "1") is None


def test_moves_outside_the_recorder_still_give_a_previous_champion() -> None:
    assert previous_champion([], "3") is None
    # history started while v5 was champion (set before recording) and the alias was then moved by hand to 7
    assert previous_champion([move("6", "5")], "7") == "6"
    assert previous_champion([move("6", "5")], "6") == "5"

"""Process logs: reading, the time split of Tax et al., prefixes with the end of case, the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.automation.process_log import (
    END_TOKEN,
    ProcessLogError,
    Vocabulary,
    most_frequent_next,
    prefixes,
    read_cases,
    split_cases,
)


def _write(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    path.write_text("CaseID,ActivityID,CompleteTimestamp\n" + "".join(f"{c},{a},{t}\n" for c, a, t in rows))
    return path


def test_cases_are_time_ordered_and_split_by_first_event(tmp_path: Path) -> None:
    rows = []
    for case in range(9):  # case 8 starts first: the file order is not the time order
        day = (case + 1) % 9 + 1
        rows += [(case, "B", f"2020-01-{day:02d} 10:00:00"), (case, "A", f"2020-01-{day:02d} 09:00:00")]
    cases = read_cases(_write(tmp_path / "log.csv", rows))
    assert all(c.activities == ("A", "B") for c in cases)
    split = split_cases(cases)
    assert [len(split.train), len(split.val), len(split.test)] == [4, 2, 3]
    assert max(c.times[0] for c in split.train + split.val) < min(c.times[0] for c in split.test)
    assert split.train[0].case_id == "8"


def test_prefixes_end_with_the_end_token_and_baseline_follows_the_last_activity(tmp_path: Path) -> None:
    rows = [(c, a, f"2020-01-01 0{i}:00:00") for c in range(4) for i, a in enumerate("ABC")]
    cases = read_cases(_write(tmp_path / "log.csv", rows))
    vocab = Vocabulary.build([c.activities for c in cases])
    data = prefixes(cases, vocab)
    assert len(data) == 4 * 3
    first = data.subset(np.arange(len(data)) < 3)
    assert [vocab.tokens[t] for t in first.targets] == ["B", "C", END_TOKEN]
    assert first.activities[0].tolist()[-1] == vocab.id("A") and first.activities[0].tolist()[0] == 0  # left pad
    table = most_frequent_next(data, vocab.size)
    assert vocab.tokens[table[vocab.id("B")]] == "C" and table[vocab.id("C")] == vocab.id(END_TOKEN)


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("case,activity\n1,A\n")
    with pytest.raises(ProcessLogError, match="columns"):
        read_cases(bad)
    _write(tmp_path / "log.csv", [(1, "A", "yesterday")])
    with pytest.raises(ProcessLogError, match="bad timestamp"):
        read_cases(tmp_path / "log.csv")

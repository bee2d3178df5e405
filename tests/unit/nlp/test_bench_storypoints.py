from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from bench.__main__ import main as bench_main

from .test_effort import synthetic_issues


def _write_project(path: Path, seed: int) -> None:
    texts, points = synthetic_issues(90, seed)
    marks = ["train"] * 54 + ["val"] * 18 + ["test"] * 18
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["issuekey", "title", "description", "storypoint", "split_mark"])
        for i, (text, sp, mark) in enumerate(zip(texts, points, marks, strict=True)):
            title, _, desc = text.partition(" ")
            writer.writerow([f"P-{i}", title, f"{{html}}<p>{desc}</p>{{html}}", int(sp), mark])


def test_storypoints_bench_writes_the_report(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    _write_project(data / "alpha.csv", seed=10)
    _write_project(data / "beta.csv", seed=11)
    (data / "deepse_tse2018_table3_published.csv").write_text(
        "project_abbrev,project_file,method,MAE,MdAE,SA\nAL,alpha,Deep-SE,1.50,1.0,50.0\n"
    )
    assert bench_main(["storypoints", "--data", str(data), "--out", str(out), "--quick"]) == 0

    report = json.loads((out / "storypoints.json").read_text())
    assert set(report["projects"]) == {"alpha", "beta"}
    for name, row in report["projects"].items():
        assert {"model_mae", "mean_mae", "median_mae", "deepse_published_mae", "chosen_model"} <= set(row)
        assert np.isfinite(row["model_mae"]) and row["model_mae"] >= 0
        assert row["refit_on_train_val"] is True and row["chosen_model"] in report["val_mae_by_candidate"][name]
        assert row["median_trainval_mae"] >= 0 and "median" in report["val_mae_by_candidate"][name]
    assert report["projects"]["alpha"]["deepse_published_mae"] == 1.5
    assert report["projects"]["beta"]["deepse_published_mae"] is None
    assert report["summary"]["n_projects"] == 2
    assert 0 <= report["summary"]["beats_median"] <= 2
    assert set(report["summary"]["beats_median_from_text"]) <= set(report["summary"]["beats_median_projects"])
    assert (out / "storypoints.png").stat().st_size > 0


def test_storypoints_bench_skips_a_missing_folder(tmp_path: Path, capsys: object) -> None:
    assert bench_main(["storypoints", "--data", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "storypoints.json").exists()


def test_unknown_benchmark_is_a_usage_error() -> None:
    assert bench_main(["no-such-bench"]) == 2

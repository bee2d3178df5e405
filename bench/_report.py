"""Shared report helper for benchmarks: a printed table, a JSON file and a PNG (matplotlib Agg)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Row = Mapping[str, object]
PlotFn = Callable[[Any], None]  # receives a matplotlib Figure


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return "-" if value is None else str(value)


def format_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """Render rows (dicts) as a fixed-width text table with the given column order."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    header = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([header, sep, *body])


def _json_default(value: object) -> object:
    # numpy scalars and arrays, Paths: convert rather than fail half-way through a report.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_plot(path: Path, plot_fn: PlotFn, figsize: tuple[float, float] = (10.0, 5.0)) -> Path:
    """Draw with `plot_fn(fig)` on a fresh Agg figure and save it as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    try:
        plot_fn(fig)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def write_report(
    out_dir: Path,
    name: str,
    payload: Mapping[str, object],
    table_rows: Sequence[Row] = (),
    columns: Sequence[str] = (),
    plot_fn: PlotFn | None = None,
) -> Path:
    """Write `out_dir/<name>.json` (and `<name>.png` if `plot_fn`), print the table; return the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True) + "\n")
    if table_rows and columns:
        print(format_table(table_rows, columns))
    if plot_fn is not None:
        print(f"plot: {save_plot(out_dir / f'{name}.png', plot_fn)}")
    print(f"report: {json_path}")
    return json_path

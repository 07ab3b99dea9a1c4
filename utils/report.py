"""Results of a notebook run: a JSON file the tests and the course summary read, and small table helpers."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .env import RunContext


def to_jsonable(value: Any) -> Any:
    """Convert NumPy, pandas, torch and Path values to plain JSON types (NaN becomes None)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame: list of row dicts
        return to_jsonable(value.reset_index().to_dict(orient="records"))
    if hasattr(value, "tolist"):  # NumPy scalars/arrays, torch tensors
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def save_results(ctx: RunContext, results: dict[str, Any], headline: dict[str, Any]) -> Path:
    """Write `<out_dir>/results.json`: all measured results, the exercise checks run (checks.passed) and a few
    headline figures for the course summary. The headline's values become plain Python numbers in place, so a
    notebook that shows it prints `2.66`, not `np.float64(2.66)`."""
    from .checks import passed

    if not headline:
        raise ValueError("headline must name at least one result for the course summary")
    headline.update(to_jsonable(headline))
    if exercises := passed(ctx.notebook):
        results = {**results, "exercises": exercises}
    doc = {"notebook": ctx.notebook, "profile": ctx.profile, "reason": ctx.reason, "models": ctx.note or "as named",
           "device": ctx.device,
           "settings": ctx.settings, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "headline": headline, "results": results}
    path = ctx.out_dir / "results.json"
    path.write_text(json.dumps(to_jsonable(doc), indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results.json written by save_results."""
    return json.loads(Path(path).read_text(encoding="utf-8"))

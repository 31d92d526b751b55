"""Local data sources (JSONL, JSON, parquet, plain text, `datasets` directories) and disjoint chunks.

Nothing here downloads: every source is a local path. Errors name the path, line or field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prunetune.errors import UserError


def load_records(source: str | os.PathLike) -> list[dict]:
    """Read records from a local file or `datasets.save_to_disk` directory; `.txt` gives {"text": line}."""
    p = Path(source)
    if not p.exists():
        raise UserError(f"data file '{source}' does not exist")
    if p.is_dir():
        try:
            import datasets

            ds = datasets.load_from_disk(str(p))
        except Exception as e:  # noqa: BLE001 - any failure here is a bad path from the user
            raise UserError(f"'{source}' is not a datasets directory: {str(e).splitlines()[0]}") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        records = [dict(r) for r in ds]
    elif p.suffix == ".parquet":
        import datasets

        records = [dict(r) for r in datasets.Dataset.from_parquet(str(p))]
    elif p.suffix == ".json":
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
        records = obj if isinstance(obj, list) else obj.get("data", [])
    elif p.suffix == ".txt":
        records = [{"text": line} for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        records = []
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{source}:{i}: malformed JSON line ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise UserError(f"{source}:{i}: expected a JSON object per line")
                records.append(rec)
    if not records:
        raise UserError(f"data file '{source}' is empty")
    return records


def field_values(records: list[dict], field: str, source: str = "data") -> list:
    """The values of one field; a missing field is an error naming it and the fields that exist."""
    if field not in records[0]:
        raise UserError(f"{source}: no field '{field}'; fields are: {', '.join(map(str, records[0]))}")
    return [r[field] for r in records]


def take_chunk(records: list, index: int, size: int) -> list:
    """Chunk `index` (0-based) of `size` records: iteration i trains on fresh, disjoint data.

    When the data runs out the chunks wrap around (with a warning left to the caller's log).
    """
    if size <= 0:
        raise UserError("chunk size must be positive")
    n = len(records)
    start = (index * size) % n
    out = records[start:start + size]
    while len(out) < size:
        out += records[: size - len(out)]
    return out

"""Text and record sources: local files (JSONL, JSON, parquet, plain text, `datasets` directories) and
registered generators, cut into the fresh, disjoint chunks that each iteration trains on.

Nothing here downloads: a source is a local path or a name in SOURCES (the built-in `arith` generator
registers itself there). Errors name the path, line or field.
"""

from __future__ import annotations

import contextlib
import json
import os
from functools import lru_cache
from pathlib import Path

from prunetune.errors import UserError
from prunetune.registry import Registry

SOURCES = Registry("text source")
"""name -> fn(count, seed) -> the first `count` records of a seeded stream; each record has a "text"
field (and "prompt" / "completion" where the source has them)."""

CALIBRATION_SEED_OFFSET = 10_000
"""Calibration draws from a registered source under another seed than recovery, so they never share records."""


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
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(str(p)).to_pylist()
        except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for one cause: a bad file
            raise UserError(f"{source}: not a readable parquet file ({type(e).__name__})") from None
    else:
        records = _read_text_records(p, source)
    if not records:
        raise UserError(f"data file '{source}' is empty")
    return records


def _read_text_records(p: Path, source) -> list[dict]:
    """JSON (a list, or {"data": [...]}), plain text (a record per line) or JSONL (an object per line)."""
    try:
        if p.suffix == ".json":
            try:
                obj = json.loads(p.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise UserError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
            records = obj if isinstance(obj, list) else obj.get("data", []) if isinstance(obj, dict) else None
            if records is None or not all(isinstance(r, dict) for r in records):
                raise UserError(f"{source}: expected a list of JSON objects (or {{\"data\": [...]}})")
            return records
        if p.suffix == ".txt":
            return [{"text": line} for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
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
        return records
    except UnicodeDecodeError as e:
        raise UserError(f"{source}: not UTF-8 text (byte {e.start})") from None
    except IsADirectoryError:
        raise UserError(f"{source}: is a directory, not a data file") from None


def is_registered(source: str | None) -> bool:
    return isinstance(source, str) and not Path(source).exists() and source in SOURCES


def check_source(source: str, key: str) -> None:
    """A registered source name or an existing path; otherwise a UserError naming `key`."""
    if not is_registered(source) and not Path(source).exists():
        raise UserError(
            f"{key}: '{source}' does not exist (neither a file nor a text source: {', '.join(SOURCES.names())})"
        )


def where(source, index: int) -> str:
    """Where record `index` (0-based) of `source` is: `file:line` for JSONL and text, else `file: record N`."""
    p = Path(str(source))
    if p.is_file() and p.suffix not in (".json", ".parquet"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            seen = -1
            with open(p, encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    seen += bool(line.strip())
                    if seen == index:
                        return f"{source}:{line_no}"
    return f"{source}: record {index + 1}"


def field_values(records: list[dict], field: str, source: str = "data") -> list:
    """The values of one field in every record; a record without it is an error naming file:line, the
    field and the fields that record has."""
    for i, r in enumerate(records):
        if field not in r or r[field] is None:
            raise UserError(f"{where(source, i)}: no field '{field}'; fields are: {', '.join(map(str, r)) or '(none)'}")
    return [r[field] for r in records]


def require_fields(records: list[dict], fields: tuple[str, ...], source: str = "data") -> None:
    """Every record has each of `fields` (not null): else a UserError naming file:line and the field."""
    for f in fields:
        field_values(records, f, source)


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


@lru_cache(maxsize=4)
def _file_records(path: str) -> tuple:
    return tuple(load_records(path))


def take(source: str, start: int, count: int, seed: int = 0) -> list[dict]:
    """Records start .. start + count of `source` (a registered name or a file, which wraps around):
    consecutive takes are fresh and disjoint, whatever their sizes."""
    if is_registered(source):
        return SOURCES.get(source)(start + count, seed)[start:]
    records = list(_file_records(source))
    n = len(records)
    return [records[(start + i) % n] for i in range(count)]


def chunk(source: str, index: int, size: int, seed: int = 0) -> list[dict]:
    """Chunk `index` of `size` records of `source`: iteration i trains on chunk i."""
    return take(source, index * size, size, seed)


HELD_OUT_SEED_OFFSET = 50_000
"""Held-out text (for measuring damage) is yet another draw of a registered source."""


def held_out_pairs(source: str, *, field: str = "text", limit: int = 32, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, continuation) pairs to measure damage on, apart from the texts scored: another seed of a
    registered source, or the last `limit` records of a file (calibration takes the first). Damage is the
    loss on the continuation: a worked solution given its question where the data says which is which
    (prompt/completion or question/answer fields), else the whole text (prompt "")."""
    if is_registered(source):
        records = SOURCES.get(source)(limit, HELD_OUT_SEED_OFFSET + seed)
    else:
        records = load_records(source)[-limit:]
    out = []
    for r in records:
        if isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str):
            out.append((r["prompt"], r["completion"]))
        elif isinstance(r.get("question"), str) and isinstance(r.get("answer"), str):
            out.append((f"Question: {r['question']}\nAnswer:", " " + r["answer"]))
        elif isinstance(r.get(field), str) and r[field].strip():
            out.append(("", r[field]))
    if not out:
        raise UserError(f"'{source}' has no held-out text (field '{field}', or prompt/completion, question/answer)")
    return out


def calibration_texts(source: str | None, *, field: str = "text", limit: int = 64, seed: int = 0) -> list[str]:
    """Texts for scoring from a registered source or a local JSONL/text/parquet/datasets path.

    JSONL records without `field` but with GSM8K's question/answer are joined as
    "Question: ...\\nAnswer: ...", the paper's chain-of-thought format.
    """
    if is_registered(source):
        return [r["text"] for r in SOURCES.get(source)(limit, CALIBRATION_SEED_OFFSET + seed)]
    if source is None:
        raise UserError("no calibration text given")
    records = load_records(source)
    if field not in records[0] and {"question", "answer"} <= set(records[0]):
        require_fields(records, ("question", "answer"), source)
        texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in records]
    else:
        texts = [str(t) for t in field_values(records, field, source)]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError(f"calibration file '{source}' has no non-empty text")
    return texts[:limit]


IGNORE = -100
"""Label of a position that carries no loss (padding, prompt tokens)."""


def right_pad(sequences: list[list[int]], pad_id: int, labels: list[list[int]] | None = None) -> dict:
    """Right-padded `input_ids`, `attention_mask` and (when given) `labels` (padded with IGNORE) as tensors.

    Right padding keeps position ids equal to token positions without passing them explicitly.
    """
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        out["labels"] = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
        for i, lab in enumerate(labels):
            out["labels"][i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    return out

"""Calibration text for importance scoring: from a local file, or the built-in arithmetic problems."""

from __future__ import annotations

from prunetune.errors import UserError


def calibration_inputs(
    tokenizer,
    source: str | None,
    general: str | None = None,
    *,
    field: str = "text",
    limit: int = 64,
    max_length: int = 256,
    seed: int = 0,
) -> tuple[list[dict], list[dict] | None]:
    """Tokenised reasoning calibration batches, and general-text batches (for `ptl`) when given."""
    from prunetune.pruning.importance import calibration_batches

    batches = calibration_batches(
        tokenizer, calibration_texts(source, field=field, limit=limit, seed=seed), max_length=max_length
    )
    general_batches = None
    if general:
        general_batches = calibration_batches(
            tokenizer, calibration_texts(general, field=field, limit=limit), max_length=max_length
        )
    return batches, general_batches


def calibration_texts(
    source: str | None, *, field: str = "text", limit: int = 64, seed: int = 0
) -> list[str]:
    """Texts for scoring. `source` is a local JSONL/text/parquet/datasets path, or 'arith' (built-in).

    JSONL records without `field` but with GSM8K's question/answer are joined as
    "Question: ...\\nAnswer: ...", the paper's chain-of-thought format.
    """
    if source is None or source == "arith":
        from prunetune import arith
        from prunetune.reference import DATA_OPTIONS

        problems = arith.generate_problems(limit, split="train", seed=10_000 + seed, **DATA_OPTIONS)
        return [arith.format_text(r) for r in problems]
    from prunetune.data import field_values, load_records

    records = load_records(source)
    if field not in records[0] and {"question", "answer"} <= set(records[0]):
        texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in records]
    else:
        texts = [str(t) for t in field_values(records, field, source)]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError(f"calibration file '{source}' has no non-empty text")
    return texts[:limit]

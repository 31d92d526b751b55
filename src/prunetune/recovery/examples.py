"""Training examples for the tuners: packed text blocks (cpt, distill) and prompt/completion pairs (sft).

Hand-written because the rules are short and must hold on every tokenizer: TRL's SFT tokenizer
assumes chat-capable tokenizers, and `datasets` packing pulls in its own map/cache files.
"""

from __future__ import annotations

from prunetune.data import IGNORE, right_pad
from prunetune.errors import UserError


def _fields(records: list[dict]) -> str:
    return ", ".join(map(str, records[0]))


def template_fields(template: str) -> list[str]:
    """The record fields a `template` names; a template str.format cannot fill (a lone brace, a positional
    or attribute/index field) is a UserError naming it (write {{ and }} for literal braces)."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise UserError(f"template: {e} in {template[:60]!r} (write {{{{ and }}}} for literal braces)") from None
    names = [name for _, name, _, _ in parsed if name is not None]
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise UserError(f"template: '{{{bad[0]}}}' is not a record field name (write {{{{ and }}}} for literal braces)")
    return names


def record_texts(records: list[dict], text_field: str = "text", template: str | None = None) -> list[str]:
    """One training text per record: the `template` filled from its fields, or its `text_field`."""
    if template:
        names = template_fields(template)
        out = []
        for i, r in enumerate(records):
            missing = [n for n in names if n not in r]
            if missing:
                raise UserError(f"template field '{missing[0]}' is not in record {i + 1}; fields are: {_fields(records)}")
            try:
                out.append(template.format(**r))
            except (ValueError, TypeError) as e:  # a format spec that does not fit the record's value
                raise UserError(f"template: record {i + 1}: {e}") from None
        return out
    if text_field not in records[0]:
        raise UserError(f"data has no field '{text_field}' (text_field); fields are: {_fields(records)}")
    for i, r in enumerate(records):
        if not isinstance(r.get(text_field), str):
            raise UserError(f"record {i}: field '{text_field}' is missing or not a string")
    return [r[text_field] for r in records]


def pack_blocks(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """Concatenate the tokenized texts, EOS after each document, and cut fixed blocks of `max_length`.

    The remainder shorter than a block is dropped (as in the transformers language-modeling examples).
    """
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(texts)["input_ids"]:
        stream.extend(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            stream.append(eos)
    n = len(stream) // max_length
    if n == 0:
        raise UserError(
            f"the data holds {len(stream)} tokens, fewer than one block of max_length={max_length}"
        )
    return [{"input_ids": stream[i * max_length : (i + 1) * max_length]} for i in range(n)]


def _chat_split(tokenizer, prompt_messages: list[dict], completion: str) -> tuple[str, str]:
    """(prompt text, completion text) rendered by the tokenizer's chat template, or plainly without one."""
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(prompt_messages, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            prompt_messages + [{"role": "assistant", "content": completion}], tokenize=False
        )
        if full.startswith(prompt):
            return prompt, full[len(prompt) :]
        return prompt, completion
    lines = [f"{m['role']}: {m['content']}" for m in prompt_messages]
    return "\n".join(lines) + "\nassistant: ", completion


def pair_examples(
    tokenizer,
    records: list[dict],
    *,
    prompt_field: str,
    completion_field: str,
    messages_field: str,
    max_length: int,
    chat_template: bool | None = None,
) -> list[dict]:
    """Tokenized prompt+completion with labels on the completion tokens only (prompt labels are -100).

    Plain prompt/completion text is concatenated as is when the tokenizer has no chat template, and
    wrapped in it (user turn, then assistant turn) when it has one; `chat_template` False keeps them as
    they are, True insists on the template. A `messages` list trains on its last message, which must
    come from the assistant.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not has_template:
        raise UserError("chat_template: true, but the tokenizer has no chat template")
    first = records[0]
    if prompt_field in first:
        if completion_field not in first:
            raise UserError(
                f"data has no field '{completion_field}' (completion_field); fields are: {_fields(records)}"
            )
        use_chat = has_template if chat_template is None else chat_template
    elif messages_field in first:
        use_chat = True
    else:
        raise UserError(
            f"data has neither '{prompt_field}' (prompt_field) nor '{messages_field}' (messages_field); "
            f"fields are: {_fields(records)}"
        )
    eos = tokenizer.eos_token_id
    out = []
    for i, r in enumerate(records):
        if prompt_field in first:
            p, c = r.get(prompt_field), r.get(completion_field)
            if not isinstance(p, str) or not isinstance(c, str):
                raise UserError(f"record {i}: '{prompt_field}' and '{completion_field}' must be strings")
            if use_chat:
                p, c = _chat_split(tokenizer, [{"role": "user", "content": p}], c)
        else:
            msgs = r.get(messages_field)
            if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "assistant":
                raise UserError(
                    f"record {i}: '{messages_field}' must be a chat list ending with an assistant message"
                )
            p, c = _chat_split(tokenizer, msgs[:-1], msgs[-1]["content"])
        p_ids = tokenizer(p, add_special_tokens=not use_chat)["input_ids"]
        c_ids = tokenizer(c, add_special_tokens=False)["input_ids"]
        if eos is not None and (not c_ids or c_ids[-1] != eos):
            c_ids.append(eos)
        ids = (p_ids + c_ids)[:max_length]
        labels = ([IGNORE] * len(p_ids) + c_ids)[:max_length]
        if any(lab != IGNORE for lab in labels):
            out.append({"input_ids": ids, "labels": labels})
    if not out:
        raise UserError(f"every prompt is at least max_length={max_length} tokens long; nothing to train on")
    return out


class PadCollator:
    """Right-pad input_ids (pad id), labels (-100) and attention_mask; labels default to input_ids."""

    def __init__(self, pad_token_id: int | None):
        self.pad = 0 if pad_token_id is None else pad_token_id

    def __call__(self, batch: list[dict]) -> dict:
        ids = [b["input_ids"] for b in batch]
        return right_pad(ids, self.pad, [b.get("labels", b["input_ids"]) for b in batch])

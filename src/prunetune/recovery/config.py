"""Each tuner's documented config keys, defaults and validation (names follow TrainingArguments).

One table per tuner: `config_keys(method)` is what recipes are validated against, and `resolve()`
fills defaults and rejects an unknown key with a did-you-mean naming it.
"""

from __future__ import annotations

from prunetune.errors import UserError, did_you_mean

TUNERS = ("cpt", "sft", "distill", "grpo")

# name -> (default, help). Defaults follow the paper where it says (cosine, 5% warmup, 512-token
# blocks, one pass over the chunk) and are otherwise sized for a CPU.
_COMMON = {
    "max_steps": (
        None,
        "optimizer steps for this call; default one pass over the data (the paper: 1 epoch per chunk)",
    ),
    "max_tokens": (
        None,
        "token budget instead of max_steps (converted to steps; training stops once reached)",
    ),
    "learning_rate": (1e-5, "peak AdamW learning rate (2e-4 by default with lora)"),
    "per_device_train_batch_size": (4, "sequences per device per micro-batch"),
    "gradient_accumulation_steps": (1, "micro-batches per optimizer step"),
    "lr_scheduler_type": ("cosine", "cosine | linear | constant (a GlobalSchedule overrides it)"),
    "warmup_ratio": (
        0.05,
        "fraction of steps warming up linearly (a GlobalSchedule warms up only at its start)",
    ),
    "weight_decay": (0.0, "AdamW decoupled weight decay on matrices"),
    "adam_beta1": (0.9, "AdamW beta1"),
    "adam_beta2": (0.999, "AdamW beta2"),
    "adam_epsilon": (1e-8, "AdamW epsilon"),
    "max_grad_norm": (1.0, "gradient clipping norm (0 disables)"),
    "seed": (0, "seed for initialisation of LoRA, data order and sampling"),
    "logging_steps": (1, "record metrics every N optimizer steps"),
    "bf16": (False, "bf16 mixed precision (GPU only; keep False on CPU)"),
    "gradient_checkpointing": (False, "recompute activations in backward to save memory"),
}
_TEXT = {
    "max_length": (512, "tokens per packed block"),
    "text_field": ("text", "record field holding the raw text"),
    "template": (
        None,
        "a str.format template filled from record fields, e.g. 'Question: {question}\\nAnswer: {answer}'",
    ),
}
_PAIRS = {
    "max_length": (512, "longest prompt+completion in tokens (longer ones are truncated)"),
    "prompt_field": ("prompt", "record field holding the prompt"),
    "completion_field": ("completion", "record field holding the completion (the only tokens with loss)"),
    "messages_field": (
        "messages",
        "record field holding a chat list; its last (assistant) message is the completion",
    ),
}
_LORA = {
    "lora": (None, "{r, alpha, target_modules, dropout}: train a LoRA adapter and merge it before returning")
}

KEYS: dict[str, dict[str, tuple]] = {
    "cpt": {**_COMMON, **_TEXT, **_LORA},
    "sft": {**_COMMON, **_PAIRS, **_LORA},
    "distill": {
        **_COMMON,
        **_TEXT,
        **{k: v for k, v in _PAIRS.items() if k != "max_length"},
        **_LORA,
        "format": (
            "text",
            "text (packed blocks, like cpt) | prompt_completion (like sft, KL on completions)",
        ),
        "temperature": (2.0, "softening temperature T; the KL is multiplied by T^2"),
        "alpha": (0.0, "weight of the LM loss: loss = (1 - alpha) * KL + alpha * LM"),
        "teacher_dtype": (None, "hold the teacher in this dtype (e.g. bfloat16) to save memory"),
    },
    "grpo": {
        **{k: v for k, v in _COMMON.items() if k not in ("max_tokens", "gradient_checkpointing")},
        "learning_rate": (1e-6, "peak AdamW learning rate (the paper's 1e-6)"),
        "per_device_train_batch_size": (
            8,
            "completions per device per micro-batch (a multiple of num_generations overall)",
        ),
        "max_steps": (None, "optimizer steps; default one pass over the prompts"),
        "num_generations": (8, "samples per prompt (the paper's 8)"),
        "temperature": (1.0, "sampling temperature (the paper's 1.0)"),
        "top_p": (1.0, "nucleus sampling"),
        "max_completion_length": (64, "new tokens per completion (small for CPU)"),
        "beta": (
            0.0,
            "KL coefficient to the reference model (the paper's 0.01; trl's default 0 needs no reference copy)",
        ),
        "num_iterations": (1, "policy updates per generated batch"),
        "loss_type": ("dapo", "trl loss_type: grpo | dr_grpo | dapo | bnpo ..."),
        "scale_rewards": ("group", "trl scale_rewards: group | batch | none"),
    },
}


def config_keys(method: str) -> dict[str, str]:
    """Documented keys of `method`'s config: name -> help (recipes are validated against these)."""
    check_method(method)
    return {k: h for k, (_, h) in KEYS[method].items()}


def check_method(method: str) -> None:
    if method not in TUNERS:
        raise UserError(
            f"unknown recovery method '{method}'{did_you_mean(method, TUNERS)}; choose from {', '.join(TUNERS)}"
        )


LORA_KEYS = {"r": 8, "alpha": 16, "target_modules": "all-linear", "dropout": 0.0}


def resolve(method: str, config: dict | None) -> dict:
    """Defaults filled in; an unknown key (also inside `lora`) is a UserError naming it."""
    check_method(method)
    table = KEYS[method]
    config = dict(config or {})
    for key in config:
        if key not in table:
            raise UserError(f"unknown {method} config key '{key}'{did_you_mean(key, table)}")
    out = {k: d for k, (d, _) in table.items()}
    out.update(config)
    if out.get("lora") is not None:
        if not isinstance(out["lora"], dict):
            raise UserError("config key 'lora' must be a mapping like {r: 8, alpha: 16}")
        for key in out["lora"]:
            if key not in LORA_KEYS:
                raise UserError(f"unknown lora key 'lora.{key}'{did_you_mean(key, LORA_KEYS)}")
        out["lora"] = {**LORA_KEYS, **out["lora"]}
        if "learning_rate" not in config:
            out["learning_rate"] = 2e-4
    if out["lr_scheduler_type"] not in ("cosine", "linear", "constant"):
        raise UserError(
            f"lr_scheduler_type '{out['lr_scheduler_type']}' is not supported; choose cosine, linear or constant"
        )
    for key in (
        "max_steps",
        "max_tokens",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_length",
    ):
        v = out.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise UserError(f"config key '{key}' must be a positive integer, got {v!r}")
    if out.get("max_steps") is not None and out.get("max_tokens") is not None:
        raise UserError("give either max_steps or max_tokens, not both")
    for key in ("learning_rate", "warmup_ratio", "weight_decay", "temperature", "alpha", "beta"):
        v = out.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise UserError(f"config key '{key}' must be a number, got {v!r}")
    if method == "distill" and out["format"] not in ("text", "prompt_completion"):
        raise UserError(
            f"distill config key 'format' must be text or prompt_completion, got {out['format']!r}"
        )
    if method == "distill" and not 0.0 <= out["alpha"] <= 1.0:
        raise UserError(f"distill config key 'alpha' must be in [0, 1], got {out['alpha']}")
    return out

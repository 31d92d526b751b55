"""Reasoning traces: where a completion's thinking ends and its answer begins.

Thinking models (Qwen3, SmolLM3, DeepSeek-R1 distills, Phi-4-reasoning) write `<think> ... </think>`
and then the answer. A task with a trace reads its answer only after the trace's last end delimiter (as
lm-eval's `think_end_token` does), so numbers written while thinking are never taken for the answer, and
a completion whose trace never closes has no answer at all: it is wrong. Every math and code task holds
one `Reasoning` and its score goes through it, so evaluation and the GRPO reward (the same score) cannot
split a completion differently. Stop strings (`\\nQuestion:`, `\\ndef `) would fire inside a trace, so
while a trace is expected generation runs without them and the answer is cut at them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prunetune.config import build, field_docs
from prunetune.errors import UserError

# Delimiter pairs that chat templates of thinking families name, looked for in this order.
KNOWN_DELIMITERS = (
    ("<think>", "</think>"),  # Qwen3, SmolLM3, DeepSeek-R1 and its distills, Phi-4-reasoning
    ("<thinking>", "</thinking>"),
    ("[THINK]", "[/THINK]"),  # Magistral
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)
SWITCH = "enable_thinking"  # the chat-template variable Qwen3 and SmolLM3 read


@dataclass
class ReasoningOptions:
    think: Literal["auto", "none"] | list[str] = "auto"
    """Reasoning-trace delimiters [start, end]: the answer is read only after the trace ends and a trace
    never closed is wrong (counted as truncated_in_thinking when the token budget ran out) | auto: the
    tokenizer's chat template's (Qwen3, SmolLM3: <think>, </think>), none when it names none | none."""
    enable_thinking: bool | None = None
    """The chat template's thinking switch (Qwen3, SmolLM3): true | false | null (the template's default);
    an error for a template without it."""


OPTION_DOCS = field_docs(ReasoningOptions)
"""What `ls -v` prints beside each task's think / enable_thinking options."""


@dataclass(frozen=True)
class Split:
    """A completion cut at its trace: `answer` is None when the trace never closed."""

    thinking: str
    answer: str | None
    trace: Literal["none", "closed", "open"]
    trace_end: int  # characters of the completion that belong to the trace (0 without one)


def check_delimiters(value, key: str = "task option think") -> tuple[str, str]:
    """[start, end] as a pair of distinct non-empty strings, or a one-line UserError naming `key`."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise UserError(f"{key}: give [start, end] delimiters, 'auto' or 'none', got {value!r}")
    start, end = value
    if not start.strip() or not end.strip():
        raise UserError(f"{key}: delimiters must not be empty, got {list(value)!r}")
    if start == end:
        raise UserError(f"{key}: start and end delimiters must differ, got {start!r} twice")
    return start, end


def chat_template_text(tokenizer) -> str:
    """The tokenizer's chat template as text (a dict of named templates joined), '' without one."""
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if isinstance(template, dict):
        return "\n".join(str(t) for t in template.values())
    return template or ""


def template_delimiters(tokenizer) -> tuple[str, str] | None:
    """The first known delimiter pair the chat template names both halves of, else None."""
    text = chat_template_text(tokenizer)
    return next(((s, e) for s, e in KNOWN_DELIMITERS if s in text and e in text), None)


def has_switch(tokenizer) -> bool:
    """Whether the chat template reads `enable_thinking`."""
    return SWITCH in chat_template_text(tokenizer)


def cut_at_stop(text: str, stop: list[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else text


class Reasoning:
    """A task's trace handling: options checked at construction, delimiters resolved from the tokenizer.

    `bind(tokenizer)` (called by the task's build_prompt, before any completion is scored) resolves
    `think=auto` from the chat template and checks `enable_thinking` against it; `seen(prompt)` notes
    whether the template itself opened the trace (DeepSeek-R1's ends its prompt in `<think>\\n`) or
    closed it (Qwen3 with enable_thinking=false writes an empty trace into the prompt).
    """

    def __init__(self, think="auto", enable_thinking=None, *, stop: list[str] | None = None):
        try:
            opts = build(ReasoningOptions, {"think": think, "enable_thinking": enable_thinking})
        except UserError as e:
            raise UserError(f"task option {e}") from None
        self.auto = opts.think == "auto"
        self.delimiters = check_delimiters(opts.think) if isinstance(opts.think, list) else None
        self.enable_thinking = opts.enable_thinking
        self.stops = list(stop or [])
        self.opened = False  # the prompt ends inside an open trace
        self.pre_closed = False  # the prompt ends right after a closed (empty) trace: no thinking to come

    def bind(self, tokenizer) -> dict:
        """Resolve the delimiters for `tokenizer`; returns the chat-template keyword arguments to use."""
        if self.enable_thinking is not None and not has_switch(tokenizer):
            what = "has no chat template" if not chat_template_text(tokenizer) else "has a chat template without it"
            raise UserError(f"task option enable_thinking: this tokenizer {what} (Qwen3 and SmolLM3 templates have it)")
        if self.auto:
            self.delimiters = template_delimiters(tokenizer)
        return {} if self.enable_thinking is None else {SWITCH: self.enable_thinking}

    def seen(self, prompt: str) -> str:
        """Note how `prompt` leaves the trace (see the class doc); returns the prompt."""
        if self.delimiters is not None:
            start, end = self.delimiters
            self.opened = prompt.rfind(start) > prompt.rfind(end)
            self.pre_closed = prompt.rstrip().endswith(end)
        return prompt

    @property
    def expects_trace(self) -> bool:
        return self.delimiters is not None and not self.pre_closed

    @property
    def generation_stop(self) -> list[str]:
        """Stop strings for generation: none while a trace is expected (they would fire inside it)."""
        return [] if self.expects_trace else list(self.stops)

    def split(self, completion: str) -> Split:
        """Cut `completion` at its trace: the answer is what follows the last end delimiter, cut at the
        task's stop strings when generation ran without them (see generation_stop)."""
        if self.delimiters is None:
            return Split("", completion, "none", 0)
        stops = self.stops if self.expects_trace else []
        start, end = self.delimiters
        i = completion.rfind(end)
        if i >= 0:
            head = completion[:i]
            j = head.find(start)
            thinking = head[j + len(start) :] if j >= 0 else head
            return Split(thinking, cut_at_stop(completion[i + len(end) :], stops), "closed", i + len(end))
        j = completion.find(start)
        if j >= 0 or self.opened:
            return Split(completion[j + len(start) :] if j >= 0 else completion, None, "open", len(completion))
        return Split("", cut_at_stop(completion, stops), "none", 0)

    def answer(self, completion: str) -> str | None:
        """The part of `completion` an answer may be read from; None when the trace never closed."""
        return self.split(completion).answer

    def format_ok(self, completion: str, answer_ok: Callable[[str], bool]) -> bool:
        """The format reward's check: a closed trace (when one is expected) followed by a well-formed answer."""
        s = self.split(completion)
        if s.answer is None or (self.expects_trace and s.trace != "closed"):
            return False
        return answer_ok(s.answer)


def split_completion(task, completion: str) -> Split:
    """`task`'s split of a completion; a task without trace handling has no trace."""
    reasoning = getattr(task, "reasoning", None)
    if reasoning is None:
        return Split("", completion, "none", 0)
    return reasoning.split(completion)

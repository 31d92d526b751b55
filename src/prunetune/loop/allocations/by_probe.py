"""probe: each cut's first steps are a probe; the fall of a damage measure is fitted and the cut trains
while a step there is predicted to gain more at the end than the last cut's last step (loop/probe.py).

Its `steps` is the cap (all the later cuts leave); the loop runs the probe (it needs the model and the
measures) and writes the budget line once the probe has decided.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from prunetune.config import bounded
from prunetune.errors import UserError
from prunetune.loop.allocations.base import ALLOCATIONS, LOSS, REST, Budget, Context, StopAt, spread


@dataclass
class ProbeOptions:
    probe_steps: int = bounded(4, ge=2)
    """Optimizer steps of each cut's probe (part of the budget; the fit needs 2+)."""
    probe_measure: Literal["held_out", "answer", "kl"] = "held_out"
    """The measure fitted: held-out loss on worked solutions | loss on the final answer's tokens | KL to
    the dense model on its own greedy generations (pruning/damage.py)."""


@ALLOCATIONS.register("probe", options=ProbeOptions)
class Probe:
    """a short probe per cut, a power-law fit of the measure's fall; the cut trains while its next step
    beats an average step of the last cut (needs global_schedule)"""

    measures = frozenset({LOSS, REST})
    up_front = False
    probes = True
    """The loop runs a probe for each cut (loop.py `_start_probe`) and it decides where the cut stops."""

    def __init__(self, options: ProbeOptions | None = None):
        self.options = options or ProbeOptions()

    def steps(self, b: Budget) -> int:
        return spread(replace(b, min_share=0.0, final_share=0.0), 1.0)  # the cap; the probe decides

    def stop(self, b: Budget) -> StopAt | None:
        return None

    def check(self, ctx: Context) -> None:
        if ctx.total_steps is None or not ctx.global_schedule:
            raise UserError("recovery.allocation: probe needs recovery.total_steps and recovery.global_schedule: "
                            "true (a cut's steps are decided after its probe, under one schedule for the run)")
        if self.options.probe_steps * ctx.iterations > ctx.total_steps:
            raise UserError(f"recovery.probe_steps={self.options.probe_steps} x iterations={ctx.iterations} is "
                            f"more than recovery.total_steps={ctx.total_steps}: the probes are part of the budget")

"""The predicting allocation's arithmetic: fit how a cut's damage measure falls with recovery steps, and
decide from the fit how many steps the cut gets before the rest of the budget goes to the cuts to come.

A cut's probe is the first `probe` optimizer steps of its recovery, with the measure (held-out loss, loss
on answer tokens, or KL to the dense model: pruning/damage.py) read after every step. The fit is
L(D) = floor + scale * (D + 1) ** -power (a power law in the steps D, finite at D = 0, the value right
after the cut). The last cut cannot be topped up later, so every step this cut keeps is one the last cut
does not get, and what a step here gains does not all reach the end: it lowers where the last cut's
recovery starts, and that recovery, falling as (S + 1)^-b over its S steps, keeps only (S + 1)^-b of it.
So the cut trains while its next step's predicted gain, -L'(D), times (S + 1)^-b, is larger than the
gain of the last cut's last step, -L_last'(S): the step goes where the predicted gain at the end is
largest. The last cut is predicted by this cut's curve scaled by `ratio` (the damage still to come over
this cut's damage, both measured); the middle cuts still to come are assumed to take what this one
does. The decision is revisited at every cut (each has its own probe), and the last cut trains all that
is left.

The power law is fitted by least squares over a grid of powers (closed form for floor and scale at each):
three parameters from a handful of points, so a general optimiser (scipy.optimize.curve_fit) adds a
dependency and starting-point trouble for nothing a 1-D grid does not give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

POWERS = np.geomspace(0.05, 4.0, 80)
"""The powers the fit tries."""


@dataclass(frozen=True)
class Curve:
    floor: float
    """L_inf: where the measure would settle with unlimited steps."""
    scale: float
    """A: how far above the floor it starts (>= 0; 0 when the probe saw no fall)."""
    power: float
    """b: how fast it falls."""

    def at(self, steps: float) -> float:
        return self.floor + self.scale * (steps + 1.0) ** -self.power

    def gain(self, steps: float) -> float:
        """The predicted fall of the measure from one more step at `steps` (-dL/dD)."""
        return self.scale * self.power * (steps + 1.0) ** -(self.power + 1.0)

    def to_dict(self) -> dict:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def fit_curve(steps: list[float], values: list[float]) -> Curve:
    """Least-squares L(D) = floor + scale * (D + 1)^-power through (steps, values), scale >= 0 and
    floor >= 0 (a probe that is still falling straight would otherwise extrapolate below zero)."""
    d = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if len(d) < 2:
        raise ValueError("fit_curve needs at least two points")
    best = Curve(float(y.mean()), 0.0, 1.0)
    best_err = float(((y - y.mean()) ** 2).sum())
    for b in POWERS:
        x = (d + 1.0) ** -b
        xc, yc = x - x.mean(), y - y.mean()
        var = float((xc**2).sum())
        if var <= 0:
            continue
        a = float((xc * yc).sum()) / var
        floor = float(y.mean() - a * x.mean())
        if floor < 0:  # every measure is a loss or a KL: it cannot settle below zero
            floor, a = 0.0, float((x * y).sum()) / float((x * x).sum())
        if a <= 0:
            continue
        err = float(((y - floor - a * x) ** 2).sum())
        if err < best_err - 1e-15:
            best, best_err = Curve(floor, a, float(b)), err
    return best


def decide(curve: Curve, *, left: int, n_future: int, probe: int, ratio: float = 1.0) -> int:
    """Steps for this cut (its probe included) out of the `left` steps of the budget not yet spent.

    `n_future` cuts follow (0: this is the last, it gets all that is left); `ratio` scales this cut's
    curve into the last cut's predicted one. Every future cut keeps at least one step.
    """
    if n_future <= 0:
        return max(left, 1)
    last = Curve(curve.floor, curve.scale * max(ratio, 0.0), curve.power)
    most = max(probe, left - n_future)
    for steps in range(probe, most + 1):
        rest = left - steps * n_future  # the middle cuts to come take what this one does; the last the rest
        if rest < 1:
            return max(probe, steps - 1)
        reaches_the_end = curve.gain(steps) * (rest + 1.0) ** -last.power
        if reaches_the_end <= last.gain(rest):
            return steps
    return most


def ratio_of(rest: float | None, damage: float | None, floor: float = 1e-3) -> float:
    """The damage still to come over this cut's damage (both held-out loss rises), 1 when not measured."""
    if rest is None or damage is None:
        return 1.0
    return max(rest, floor) / max(damage, floor)


class ProbeRun:
    """One cut's probe while it trains: a stop check (recovery/until.py's StopWhen, every step) that reads
    the measure for the first `probe` steps, then fits, decides the cut's steps and stops training there.

    `measure(model)` is the fitted measure, `first` its value right after the cut (D = 0); `extra(model)`
    (optional) every measure, read right after the cut by the loop and here at the probe's end, for the
    budget line. With `n_future == 0` (the last cut) nothing is decided: it trains all that is `left`.
    """

    def __init__(self, measure, *, probe: int, left: int, n_future: int, ratio: float, first: float, extra=None,
                 after_cut: dict | None = None):
        self.measure, self.extra = measure, extra
        self.probe, self.left, self.n_future, self.ratio = probe, left, n_future, ratio
        self.values = [first]
        self.curve: Curve | None = None
        self.steps: int | None = None if n_future else left
        self.after_probe: dict | None = None
        self.after_cut = after_cut

    def check(self, model, step: int) -> bool:
        if step < self.probe:
            self.values.append(self.measure(model))
            return False
        if step == self.probe:
            self.values.append(self.measure(model))
            self.curve = fit_curve(list(range(len(self.values))), self.values)
            if self.n_future:
                self.steps = decide(self.curve, left=self.left, n_future=self.n_future, probe=self.probe,
                                    ratio=self.ratio)
            self.after_probe = self.extra(model) if self.extra else None
        return self.steps is not None and step >= self.steps

    def record(self) -> dict:
        """What the budget line says about this cut's probe and decision."""
        return {"probe_steps": self.probe, "probe_values": [round(v, 5) for v in self.values],
                "curve": self.curve.to_dict() if self.curve else None, "ratio": round(self.ratio, 4),
                "decided_steps": self.steps, "measures_after_cut": self.after_cut,
                "measures_after_probe": self.after_probe}

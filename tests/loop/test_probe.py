"""allocation: probe: the fit of a cut's probe, the decision it drives, and the budget it keeps."""

import pytest

from prunetune.loop.probe import Curve, ProbeRun, decide, fit_curve, ratio_of


def test_the_fit_recovers_a_power_law_from_its_points():
    true = Curve(floor=1.2, scale=0.8, power=0.7)
    fit = fit_curve(list(range(6)), [true.at(d) for d in range(6)])
    assert fit.floor == pytest.approx(1.2, abs=0.02) and fit.power == pytest.approx(0.7, rel=0.05)
    assert fit.at(40) == pytest.approx(true.at(40), abs=0.01)  # it predicts beyond the probe


def test_a_probe_that_saw_no_fall_predicts_no_gain():
    flat = fit_curve([0, 1, 2, 3], [2.0, 2.1, 2.05, 2.2])
    assert flat.scale == 0 and flat.gain(0) == 0
    assert decide(flat, left=100, n_future=3, probe=4) == 4  # nothing to gain here: the probe is all it gets


@pytest.mark.parametrize("power, ratio", [(0.3, 1.0), (0.7, 1.0), (0.7, 3.0), (2.0, 0.5)])
def test_the_cuts_steps_sum_to_the_total_and_each_keeps_its_probe(power, ratio):
    curve, left, out = Curve(1.0, 1.0, power), 120, []
    for i in range(4):
        out.append(decide(curve, left=left, n_future=3 - i, probe=4, ratio=ratio))
        left -= out[-1]
    assert sum(out) == 120 and min(out) >= 4
    assert out[-1] == max(out)  # the last cut cannot be topped up later: it gets the most


def test_more_damage_to_come_keeps_more_back_for_it():
    curve = Curve(1.0, 1.0, 0.6)
    steps = [decide(curve, left=120, n_future=3, probe=4, ratio=r) for r in (0.25, 1.0, 4.0)]
    assert steps[0] > steps[1] > steps[2] >= 4
    assert decide(curve, left=37, n_future=0, probe=4) == 37  # the last cut: all that is left
    assert ratio_of(None, 0.5) == 1.0 and ratio_of(2.0, 0.5) == 4.0 and ratio_of(0.0, 0.0) == 1.0


def test_the_probe_reads_the_measure_then_stops_where_it_decided():
    true = Curve(1.0, 1.0, 0.8)
    seen = []

    def measure(model):
        seen.append(model)
        return true.at(len(seen))

    run = ProbeRun(measure, probe=3, left=60, n_future=2, ratio=1.0, first=true.at(0))
    stops = [run.check(f"model@{s}", s) for s in range(1, 60)]
    decided = run.steps
    assert seen == ["model@1", "model@2", "model@3"]  # read on the first 3 steps only
    assert decided == decide(run.curve, left=60, n_future=2, probe=3) and 3 <= decided < 60 - 2
    assert stops.index(True) + 1 == decided
    rec = run.record()
    assert rec["decided_steps"] == decided and len(rec["probe_values"]) == 4

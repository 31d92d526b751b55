"""bench/allocation_probe.py's pure helpers: per-seed pairing and the rank correlations of the measures."""

import pytest

from bench import allocation_probe as ap


def test_paired_differences_use_only_the_seeds_both_ran():
    a = {0: {"accuracy": 0.8}, 1: {"accuracy": 0.7}, 2: {"accuracy": 0.9}}
    b = {0: {"accuracy": 0.6}, 1: {"accuracy": 0.7}, 5: {"accuracy": 0.1}}
    d = ap.paired(a, b)
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.1) and d["ahead"] == 1 and d["ties"] == 1
    assert ap.paired(a, {0: {"accuracy": 0.5}}) is None  # one shared seed: no spread to speak of


def _run(seed, final, values):
    """A probe run's events: per cut a budget line with every measure, and the eval after its recovery."""
    events = []
    for i, (measure, acc) in enumerate(values, 1):
        m = {k: measure for k in ap.MEASURES}
        events += [{"event": "budget", "iteration": i, "steps": 5, "measures_after_cut": m,
                    "measures_after_probe": {k: v / 2 for k, v in m.items()}},
                   {"event": "eval", "iteration": i, "metrics": {"arith": {"accuracy": acc}}}]
    return {"accuracy": final, "events": events}


def test_a_measure_that_orders_the_cuts_like_their_accuracy_correlates_fully():
    runs = {s: _run(s, 0.5 + s / 10, [(1.0 - s / 10, 0.7 + s / 20), (3.0 - s / 10, 0.5 + s / 20)]) for s in range(4)}
    rows = ap.cuts(runs)
    assert len(rows) == 8 and sum(r["last"] for r in rows) == 4
    c = ap.correlations(rows)
    assert c["kl@cut"]["within_position_mean"] == pytest.approx(-1.0)  # lower damage, higher accuracy
    assert c["held_out@probe"]["last_cut_vs_final"] == pytest.approx(-1.0)
    assert c["answer@cut"]["all_cuts"] == pytest.approx(-1.0) and c["kl@cut"]["n"] == 8

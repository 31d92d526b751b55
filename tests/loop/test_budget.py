"""Where the loop spends: cuts sized by damage, steps allocated by damage, the last cut gets what is left."""

from prunetune.loop.budget import allocate, choose_cut, future_cuts, records_for
from prunetune.recovery.schedule import GlobalSchedule


def test_choose_cut_takes_the_largest_within_the_damage_bound():
    candidates, before = [200, 100, 48, 24], 2.0
    assert choose_cut(candidates, [3.0, 2.4, 2.1, 2.05], before, 0.2) == (48, 2.1 - 2.0)
    assert choose_cut(candidates, [2.1, 2.0, 2.0, 2.0], before, 0.2) == (200, 2.1 - 2.0)
    assert choose_cut(candidates, [9.0, 8.0, 7.0, 6.0], before, 0.2) == (24, 4.0)  # none fits: the smallest


def test_allocations_follow_damage_and_sum_to_the_total():
    total, spent, got = 120, 0, []
    damages, rests = [0.1, 0.2, 0.5, 1.5], [3.0, 2.5, 1.6, 0.0]  # late cuts of a tight model hurt most
    for i, (d, rest) in enumerate(zip(damages, rests)):
        steps = allocate(total, spent, d, rest, len(damages) - i - 1)
        got.append(steps)
        spent += steps
    assert sum(got) == total and all(s >= 1 for s in got)
    assert got[0] < got[-1] and got == sorted(got)  # the budget waits for the cuts that hurt


def test_equal_allocation_and_edges():
    assert [allocate(100, s, 0.5, [], n, "equal") for s, n in ((0, 3), (25, 2), (50, 1), (75, 0))] == [25, 25, 25, 25]
    assert allocate(10, 10, 0.2, [], 0) == 1  # a last cut always trains at least one step
    assert allocate(10, 0, 1e6, 0.1, 5) == 5  # leaves one step for each future cut
    assert allocate(10, 0, -0.3, 0.2, 1) >= 1  # a loss that fell is not a negative share


def test_min_share_floors_every_cut_and_still_sums_to_the_total():
    total, spent, got = 120, 0, []
    damages, rests = [0.1, 0.05, 0.3, 2.0], [3.0, 2.8, 2.4, 0.0]
    for i, (d, rest) in enumerate(zip(damages, rests)):
        steps = allocate(total, spent, d, rest, len(damages) - i - 1, min_share=0.1)
        got.append(steps)
        spent += steps
    assert sum(got) == total and min(got) >= 12  # 10% of 120 each, whatever the damage said
    plain = [allocate(120, 0, 0.05, 2.8, 2), allocate(120, 0, 0.05, 2.8, 2, min_share=0.1)]
    assert plain[0] < 12 <= plain[1]  # without the floor this cut would have been starved
    assert allocate(120, 0, 10.0, 0.1, 3, min_share=0.2) == 120 - 3 * 24  # the future floors are kept back


def test_final_share_keeps_the_polish_for_the_last_cut():
    total, spent, got = 120, 0, []
    damages, rests = [0.2, 0.01, 0.01, 0.03], [0.3, 0.2, 0.1, 0.0]  # the first cut hurts most (50% kept)
    for i, (d, rest) in enumerate(zip(damages, rests)):
        steps = allocate(total, spent, d, rest, len(damages) - i - 1, min_share=0.1, final_share=0.5)
        got.append(steps)
        spent += steps
    assert sum(got) == total and got[-1] >= 60 and min(got) >= 12
    assert allocate(120, 0, 0.2, 0.3, 3, min_share=0.1) > allocate(120, 0, 0.2, 0.3, 3, min_share=0.1, final_share=0.5)


def test_future_cuts_and_records():
    assert future_cuts(100, 40, 10) == 3 and future_cuts(100, 40, 2) == 2 and future_cuts(0, 40, 5) == 0
    assert records_for(45, 480, 30) == 720 and records_for(1, 480, 30) == 16


def test_wsd_warms_up_holds_then_decays_over_the_last_tenth():
    s = GlobalSchedule(total_steps=100, warmup_ratio=0.05, lr_scheduler_type="wsd", decay_ratio=0.1)
    assert s.multiplier(0) == 0.0 and s.multiplier(5) == 1.0 and s.multiplier(50) == 1.0 and s.multiplier(89) == 1.0
    assert s.multiplier(90) == 1.0 and abs(s.multiplier(95) - 0.5) < 1e-9 and s.multiplier(100) == 0.0


def test_recovered_allocation_is_the_cap_the_later_cuts_leave():
    # all that is left but one step per future cut; the floors and the final share are held back
    assert allocate(120, 0, 0.2, 0.0, 3, "recovered") == 117
    assert allocate(120, 0, 0.2, 0.0, 3, "recovered", min_share=0.05) == 102
    assert allocate(120, 0, 0.2, 0.0, 3, "recovered", final_share=0.5) == 57
    assert allocate(120, 100, 0.2, 0.0, 0, "recovered") == 20  # the last cut gets what is left


def test_geometric_allocation_grows_by_the_factor_and_sums_to_the_total():
    for total, cuts, growth in [(120, 4, 2.5), (480, 4, 2.5), (120, 8, 1.6), (10, 3, 1.0)]:
        spent, got = 0, []
        for i in range(cuts):
            got.append(allocate(total, spent, 0.0, 0.0, cuts - 1 - i, "geometric", growth=growth))
            spent += got[-1]
        assert sum(got) == total and min(got) >= 1
        if growth > 1:
            assert got == sorted(got)
    assert [allocate(120, s, 0, 0, n, "geometric") for s, n in [(0, 3), (3, 2), (12, 1), (39, 0)]] == [3, 9, 27, 81]
    assert [allocate(120, s, 0, 0, n, "geometric", growth=2.5) for s, n in [(0, 3), (5, 2), (17, 1)]] == [5, 12, 29]
    assert allocate(10, 0, 0, 0, 2, "geometric", growth=1.0) == allocate(10, 0, 0, 0, 2, "equal")


def test_plan_prints_the_steps_a_fixed_allocation_gives_each_iteration(capsys):
    from tests.conftest import run_cli

    assert run_cli("plan", "demo", "recovery.total_steps=120", "recovery.allocation=geometric") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [r.rsplit("sft: ", 1)[1] for r in rows] == [f"{n} of 120 steps" for n in (3, 9, 27, 81)]
    assert run_cli("plan", "demo", "recovery.total_steps=120", "recovery.allocation=damage") == 0
    assert "damage share of 120 steps" in capsys.readouterr().out  # measured as the run goes: no numbers yet

from plugins.interventions.swapped import derangement


def test_derangement_has_no_fixed_point_and_is_seeded():
    ids = [f"i{k}" for k in range(2, 40)]
    for seed in range(50):
        d = derangement(ids, seed)
        assert sorted(d.values()) == sorted(ids)
        assert all(k != v for k, v in d.items())
    assert derangement(ids, 7) == derangement(list(reversed(ids)), 7)
    assert derangement(ids, 7) != derangement(ids, 8)

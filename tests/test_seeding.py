"""Independent streams from one seed (minippo.seeding)."""
import numpy as np
import pytest

from minippo.seeding import spawn_seeds


def test_spawned_seeds_are_reproducible_distinct_and_json_friendly():
    seeds = spawn_seeds(7, 4)
    assert seeds == spawn_seeds(7, 4) and seeds[:2] == spawn_seeds(7, 2)  # a stage's seed does not move
    assert len(set(seeds)) == 4 and seeds != spawn_seeds(8, 4)
    assert all(type(seed) is int and seed >= 0 for seed in seeds)
    assert spawn_seeds(np.int64(7), 1) == seeds[:1]


def test_spawned_streams_are_independent_of_each_other_and_of_the_seed_itself():
    """The coupling spawn_seeds removes: two streams seeded alike are the same stream (correlation 1)."""
    draws = 20_000
    same = [np.random.default_rng(3).random(draws) for _ in range(2)]
    assert np.corrcoef(*same)[0, 1] == pytest.approx(1.0)
    streams = [np.random.default_rng(seed).random(draws) for seed in spawn_seeds(3, 2)]
    streams.append(np.random.default_rng(3).random(draws))
    correlations = np.corrcoef(streams)[np.triu_indices(3, k=1)]
    assert np.all(np.abs(correlations) < 4 / np.sqrt(draws))  # 4 standard errors of a zero correlation


@pytest.mark.parametrize("seed, count, error", [(-1, 2, ValueError), (1.5, 2, TypeError), (None, 2, TypeError),
                                                (0, 0, ValueError), (0, 2.0, TypeError)])
def test_spawn_seeds_checks_its_arguments(seed, count, error):
    with pytest.raises(error, match="seed|count"):
        spawn_seeds(seed, count)

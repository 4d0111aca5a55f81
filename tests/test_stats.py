"""Intervals over the right unit: known values, coverage on simulated cases, no zero-width intervals."""

from __future__ import annotations

import numpy as np
import pytest

from clonekit.evaluation.diversity import diversity_metrics
from clonekit.evaluation.stats import (
    exact_interval,
    interquartile_mean,
    rowwise_iqm,
    rowwise_mean,
    stratified_bootstrap,
    summarize,
    wilson_interval,
)


def test_wilson_known_values() -> None:
    # Reference values of the Wilson score interval (z = 1.959964).
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(50, 50) == pytest.approx((0.9287, 1.0), abs=1e-4)
    for n in (1, 7, 50, 100, 1000):  # the interval always holds the estimate, even after rounding
        for k in (0, 1, n - 1, n):
            lo, hi = wilson_interval(max(k, 0), n)
            assert lo <= max(k, 0) / n <= hi


def test_exact_known_values() -> None:
    # Clopper-Pearson: 200/200 has lower bound (0.025)^(1/200); 0/10 has upper bound 1 - 0.025^(1/10).
    lo, hi = exact_interval(200, 200)
    assert lo == pytest.approx(0.025 ** (1 / 200), abs=1e-6) and hi == 1.0
    assert exact_interval(0, 10)[1] == pytest.approx(1 - 0.025**0.1, abs=1e-6)
    lo, hi = exact_interval(7, 10)
    assert (lo, hi) == pytest.approx((0.3475, 0.9333), abs=1e-4)


def test_iqm_trims_a_quarter_each_side() -> None:
    assert interquartile_mean([0, 0, 1, 2, 3, 4, 100, 100]) == pytest.approx(2.5)


def test_independent_binary_success_gets_wilson() -> None:
    success = np.array([True] * 30 + [False] * 10)
    m = summarize(success, seed=0)
    assert m["method"] == "wilson" and m["n"] == 40 and m["n_tasks"] == 40
    assert m["ci95"] == pytest.approx(list(wilson_interval(30, 40)))


def test_no_zero_width_interval_when_all_succeed() -> None:
    assert summarize(np.ones(200, dtype=bool))["ci95"][0] < 0.99  # Wilson over 200 independent episodes
    shared = summarize(np.ones(200, dtype=bool), groups=np.arange(200) % 50)
    assert shared["method"] == "wilson_over_tasks" and shared["n_tasks"] == 50
    assert shared["ci95"] == pytest.approx(list(wilson_interval(50, 50)))  # the task is the unit


def test_deterministic_policy_repeated_over_tasks_gets_task_level_width() -> None:
    """Four exact copies of 50 task outcomes carry the evidence of 50 outcomes, not 200."""
    per_task = np.random.default_rng(1).random(50) < 0.3
    repeated = np.tile(per_task, 4)
    clustered = summarize(repeated, seed=0, groups=np.tile(np.arange(50), 4))
    assert clustered["method"] == "cluster_bootstrap" and clustered["n"] == 200 and clustered["n_tasks"] == 50
    width = clustered["ci95"][1] - clustered["ci95"][0]
    k = int(per_task.sum())
    task_width = np.subtract(*wilson_interval(k, 50)[::-1])
    naive_width = np.subtract(*wilson_interval(4 * k, 200)[::-1])
    assert width > 1.6 * naive_width
    assert 0.75 * task_width < width < 1.25 * task_width


def test_cluster_bootstrap_covers_the_truth() -> None:
    """Simulated evaluation: task difficulty varies, 8 episodes per task; the 95% interval should cover the
    true mean about 95% of the time (the independent-episode interval covers far less)."""
    rng = np.random.default_rng(0)
    truth, covered, covered_naive, trials = 0.5, 0, 0, 100
    for trial in range(trials):
        p = rng.beta(0.5, 0.5, size=20)  # true mean 0.5, strongly varying tasks
        tasks = np.repeat(np.arange(20), 8)
        success = rng.random(tasks.size) < p[tasks]
        lo, hi = summarize(success, seed=trial, groups=tasks)["ci95"]
        covered += lo <= truth <= hi
        lo, hi = summarize(success, seed=trial)["ci95"]
        covered_naive += lo <= truth <= hi
    assert covered / trials >= 0.88
    assert covered_naive / trials < 0.8


def test_continuous_values_bootstrap_and_constant() -> None:
    values = np.arange(10, dtype=np.float64)
    m = summarize(values, seed=0, iqm=True)
    assert m["method"] == "bootstrap" and m["ci95"][0] < 4.5 < m["ci95"][1] and m["iqm"] == pytest.approx(4.5)
    assert summarize(np.full(5, 3.0))["method"] == "constant"
    assert summarize(values, seed=3) == summarize(values, seed=3)  # seeded


def test_summarize_checks_groups_length() -> None:
    with pytest.raises(ValueError, match="groups"):
        summarize([1.0, 2.0], groups=[0])


def test_stratified_bootstrap_over_runs() -> None:
    scores = np.array([[0.9, 0.5], [0.8, 0.6], [1.0, 0.4], [0.7, 0.5], [0.9, 0.5]])  # 5 runs x 2 tasks
    lo, hi = stratified_bootstrap(scores, rowwise_mean, seed=0)
    assert lo < scores.mean() < hi and hi - lo < 0.2
    assert stratified_bootstrap(np.full((5, 3), 0.5), rowwise_mean, seed=0) == (0.5, 0.5)
    lo, hi = stratified_bootstrap(scores, rowwise_iqm, seed=0)
    assert lo <= interquartile_mean(scores) <= hi


def test_behaviour_entropy_interval_says_its_method() -> None:
    modes = np.array([0, 1, 2, 3] * 10)
    success = np.ones(40, dtype=bool)
    m = diversity_metrics(success, modes, 8, seed=0)
    assert m["entropy"]["method"] == "bootstrap" and m["modes"]["mean"] == 4
    clustered = diversity_metrics(success, modes, 8, seed=0, groups=np.arange(40) % 4)
    assert clustered["entropy"]["method"] == "cluster_bootstrap" and clustered["entropy"]["n_tasks"] == 4
    # All rollouts of a task show the same mode here, so the clustered interval is the wider one.
    width = clustered["entropy"]["ci95"][1] - clustered["entropy"]["ci95"][0]
    assert width > m["entropy"]["ci95"][1] - m["entropy"]["ci95"][0]

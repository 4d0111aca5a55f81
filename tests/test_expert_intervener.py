"""The expert-backed intervener: its rule on hand-built cases, continuous rounds (gated and mixing), and DAgger
with continuous actions learning on Meta-World reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor

from clonekit.data import StreamSpec
from clonekit.envs import get_env_family
from clonekit.envs.avoiding import AvoidingTask
from clonekit.errors import ConfigError
from clonekit.evaluation import split_tasks
from clonekit.experts import make_expert
from clonekit.experts.collect import collect
from clonekit.experts.metaworld import scripted_actions, scripted_policy
from clonekit.interactive import (
    ExpertIntervener,
    ExpertIntervenerConfig,
    InteractiveConfig,
    load_round_policy,
    play_round,
    run_interactive,
)
from clonekit.policies import Policy

BOX = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)


class FixedExpert:
    """An expert whose action in slot ``i`` is ``actions[i]``, whatever it sees."""

    name = "fixed"

    def __init__(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions)
        self.resets: list[int | None] = []

    def streams(self, observation_shape: tuple[int, ...]) -> list[StreamSpec]:
        return []

    def reset(self, env: Any, seed: int | None = None) -> None:
        self.resets.append(seed)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.actions[: len(obs)].copy(), {}


class Wave:
    """The part of a vec env an intervener reads: the number of slots."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs


def fixed(actions: Any, space: gym.spaces.Space[Any] = BOX, seed: int = 0, **config: Any) -> ExpertIntervener:
    expert = FixedExpert(np.asarray(actions))
    intervener = ExpertIntervener(expert, space, ExpertIntervenerConfig(**config))
    intervener.reset(Wave(len(expert.actions)), seed)
    return intervener


class Constant(Policy):
    """Proposes the same action in every slot."""

    name = "constant"

    def __init__(self, action: list[float]) -> None:
        super().__init__()
        self.action = torch.tensor(action, dtype=torch.float32)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        return self.action.expand(len(obs["obs"]), -1).clone(), state


# --- the rule ------------------------------------------------------------------------------------------------
def test_distance_threshold_fires_at_and_beyond_the_threshold_only() -> None:
    zero = np.zeros((5, 2), dtype=np.float32)
    intervener = fixed(zero, threshold=0.5)
    proposed = np.array([[0.2, 0.0], [0.3, 0.4], [0.6, 0.0], [5.0, 0.0], [0.0, -0.49]], dtype=np.float32)
    np.testing.assert_allclose(intervener.distance(proposed, zero), [0.2, 0.5, 0.6, 1.0, 0.49], rtol=1e-6)  # clipped
    take, actions = intervener.step(zero, proposed, np.ones(5, dtype=bool))
    np.testing.assert_array_equal(take, [False, True, True, True, False])
    np.testing.assert_array_equal(actions, zero)  # the expert's actions, noiseless
    assert intervener.labels_used == 3
    # An ended episode is never taken over.
    take, _ = intervener.step(zero, proposed, np.array([True, True, False, False, True]))
    np.testing.assert_array_equal(take, [False, True, False, False, False])


def test_discrete_actions_take_over_at_any_disagreement() -> None:
    intervener = fixed([2, 2, 2], gym.spaces.Discrete(4), threshold=3.0)  # the threshold is for continuous actions
    take, actions = intervener.step(np.zeros((3, 1)), np.array([2, 1, 3]), np.ones(3, dtype=bool))
    np.testing.assert_array_equal(take, [False, True, True])
    np.testing.assert_array_equal(actions, [2, 2, 2])
    with pytest.raises(ConfigError, match="expert_noise"):
        fixed([0], gym.spaces.Discrete(4), expert_noise=1.5)
    with pytest.raises(ConfigError, match="threshold"):
        ExpertIntervenerConfig(threshold=0.0)


def test_reaction_delay_takes_over_late_and_hands_back() -> None:
    intervener = fixed(np.zeros((1, 2)), threshold=0.5, delay=2)
    bad, good, obs, on = np.array([[1.0, 0.0]]), np.zeros((1, 2)), np.zeros((1, 2)), np.ones(1, dtype=bool)
    # The rule fires at step 0; the person takes over 2 steps later even though the policy recovered at step 1,
    # acts once, and hands back at step 3 when the proposal is fine.
    flags = [bool(intervener.step(obs, p, on)[0][0]) for p in (bad, good, good, good)]
    assert flags == [False, False, True, False]
    # Still wrong when the person is due: it stays in control while the rule fires.
    intervener = fixed(np.zeros((1, 2)), threshold=0.5, delay=1)
    assert [bool(intervener.step(obs, bad, on)[0][0]) for _ in range(4)] == [False, True, True, True]


def test_label_budget_caps_take_overs_and_labels_and_a_state_is_labelled_once() -> None:
    intervener = fixed(np.zeros((4, 2)), threshold=0.5, label_budget=5)
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    take, _ = intervener.step(obs, np.ones((4, 2)), np.ones(4, dtype=bool))
    assert take.tolist() == [True, True, True, True] and intervener.labels_left == 1
    labelled, _ = intervener.label(obs + 100, np.ones(4, dtype=bool))
    assert labelled.tolist() == [True, False, False, False] and intervener.labels_used == 5
    # A state labelled before (or remembered) gets its label again without spending budget.
    intervener.remember(obs[1:2] + 100, np.array([[0.25, -0.25]]))
    labelled, actions = intervener.label(obs + 100, np.ones(4, dtype=bool))
    assert labelled.tolist() == [True, True, False, False] and intervener.labels_used == 5
    np.testing.assert_allclose(actions[1], [0.25, -0.25])
    take, _ = intervener.step(obs, np.ones((4, 2)), np.ones(4, dtype=bool))
    assert not take.any()  # no budget left to take over


def test_expert_noise_has_the_set_std_is_clipped_and_replays_from_the_seed() -> None:
    clean = np.tile(np.array([[0.0, 0.95]], dtype=np.float32), (4000, 1))

    def labels(seed: int) -> np.ndarray:
        intervener = fixed(clean, seed=seed, expert_noise=0.2)
        labelled, actions = intervener.label(np.random.default_rng(seed).random((4000, 2)), np.ones(4000, dtype=bool))
        assert labelled.all()
        return actions

    noisy = labels(0)
    assert noisy.dtype == np.float32
    assert 0.19 < noisy[:, 0].std() < 0.21 and abs(noisy[:, 0].mean()) < 0.01
    assert noisy.max() <= 1.0 and (noisy[:, 1] == 1.0).mean() > 0.3  # clipped to the action space
    np.testing.assert_array_equal(noisy, labels(0))
    assert not np.array_equal(noisy, labels(1))
    # The rule judges against the clean action: a proposal equal to it never triggers a take-over.
    intervener = fixed(clean[:3], expert_noise=0.5, threshold=0.1)
    assert not intervener.step(clean[:3], clean[:3], np.ones(3, dtype=bool))[0].any()


# --- continuous rounds ---------------------------------------------------------------------------------------
def avoiding_round(beta: float | None, seed: int = 0) -> tuple[list[dict[str, np.ndarray]], int]:
    """Four Avoiding episodes of a policy that drives straight up (into the first obstacle) under the
    Avoiding expert."""
    family = get_env_family("avoiding")
    tasks = [AvoidingTask((x, 0.0)) for x in (-0.05, 0.0, 0.03, 0.08)]
    intervener = ExpertIntervener(make_expert("avoiding", "paths"), BOX, ExpertIntervenerConfig(threshold=0.5))
    play = play_round(Constant([0.0, 1.0]), family, tasks, np.arange(4), seed, intervener, beta, {}, 40)
    return [episode for episode, _ in play.episodes], play.expert_labels


def test_gated_continuous_round_flags_interventions_with_the_experts_labels() -> None:
    episodes, labels = avoiding_round(None)
    up = np.array([0.0, 1.0], dtype=np.float32)
    flagged = 0
    for episode in episodes:
        t = len(episode["action"])
        assert episode["action"].shape == episode["expert_action"].shape == (t, 2)
        assert episode["action"].dtype == episode["expert_action"].dtype == np.float32
        flags = episode["intervention"]
        assert flags.dtype == bool and flags.any()
        np.testing.assert_array_equal(episode["expert_action"], episode["action"])  # gated: the label is what ran
        np.testing.assert_array_equal(episode["action"][~flags], np.broadcast_to(up, ((~flags).sum(), 2)))
        assert (np.linalg.norm(episode["action"][flags] - up, axis=1) >= 0.5).all()  # the expert's, far from up
        flagged += int(flags.sum())
    assert labels == flagged
    # The expert steered every agent past the first row, which driving straight up never does.
    assert all(episode["obs"][-1, 1] > 0.25 for episode in episodes)


def test_dagger_mixing_with_continuous_actions_labels_every_step() -> None:
    episodes, labels = avoiding_round(0.5)
    up = np.array([0.0, 1.0], dtype=np.float32)
    assert labels == sum(len(e["action"]) for e in episodes)
    flags = np.concatenate([e["intervention"] for e in episodes])
    action = np.concatenate([e["action"] for e in episodes])
    expert = np.concatenate([e["expert_action"] for e in episodes])
    assert 0.2 < flags.mean() < 0.8
    np.testing.assert_array_equal(action[flags], expert[flags])
    np.testing.assert_array_equal(action[~flags], np.broadcast_to(up, ((~flags).sum(), 2)))
    assert (np.abs(expert - up).sum(axis=1) > 0).all()  # a label at every step, the expert's own
    again, _ = avoiding_round(0.5)
    for a, b in zip(episodes, again, strict=True):
        np.testing.assert_array_equal(a["action"], b["action"])  # seeded: the same call plays the same round


# --- learning ------------------------------------------------------------------------------------------------
def action_error(policy: Policy, tasks: list[Any], kwargs: dict[str, Any]) -> float:
    """Mean L2 distance between the policy's actions and the scripted expert's on the policy's own states."""
    vec = get_env_family("metaworld").make_vec(tasks, **kwargs)
    obs = vec.reset()
    experts = [scripted_policy("reach-v3") for _ in tasks]
    errors = []
    with torch.inference_mode():
        while not vec.done.all():
            active = ~vec.done
            action = policy.act({"obs": torch.from_numpy(obs)})[0].numpy().clip(-1, 1)
            errors.append(np.linalg.norm(action - scripted_actions(experts, obs), axis=1)[active])
            obs, *_ = vec.step(action)
    return float(np.concatenate(errors).mean())


def test_dagger_lowers_the_action_error_on_its_own_states_on_metaworld_reach(
    tmp_path: Path, one_torch_thread: None
) -> None:
    kwargs = {"task": "reach-v3", "max_steps": 50}
    demos = collect(
        "metaworld",
        "scripted",
        episodes=2,
        seed=0,
        out=tmp_path / "d",
        num_tasks=8,
        env_kwargs=kwargs,
        show_progress=False,
    )
    config = InteractiveConfig(
        train_steps=200, batch_size=64, episodes_per_round=6, beta=0.3, policy_overrides={"hidden_sizes": [64, 64]}
    )
    run = run_interactive("dagger", demos, tmp_path / "run", rounds=2, seed=0, config=config)
    tasks = split_tasks(demos.env, "train", 0, 1)
    bc, dagger = (
        action_error(load_round_policy(tmp_path / "run", 0), tasks, kwargs),
        action_error(run.policy, tasks, kwargs),
    )
    # Measured (run seeds 0, 1, 3): bc 0.39-0.53, dagger 0.11-0.21 of bc's error; with wrong labels (expert_noise
    # 1.0, Gaussian) dagger keeps 0.82-0.95 of it.
    assert dagger <= 0.4 * bc, (bc, dagger)


def test_play_stops_at_the_step_that_spends_the_last_label() -> None:
    """Once the budget is spent nobody can step in, so no step after the last label is played or kept: steps
    nobody watched never count as approved."""
    family = get_env_family("avoiding")
    tasks = [AvoidingTask((x, 0.0)) for x in (-0.05, 0.0, 0.03, 0.08)]
    config = ExpertIntervenerConfig(threshold=0.5, label_budget=5)
    intervener = ExpertIntervener(make_expert("avoiding", "paths"), BOX, config)
    play = play_round(Constant([0.0, 1.0]), family, tasks, np.arange(4), 0, intervener, None, {}, 40)
    episodes = [episode for episode, _ in play.episodes]
    flags = np.zeros((len(episodes), 40), dtype=bool)
    for row, episode in enumerate(episodes):
        flags[row, : len(episode["intervention"])] = episode["intervention"]
    assert play.expert_labels == flags.sum() == 5
    last = int(np.flatnonzero(flags.any(0)).max())  # the step that spent the fifth label
    assert max(len(episode["action"]) for episode in episodes) == last + 1
    for episode in episodes:  # every episode ends there (or earlier, by itself), cut short as truncated
        assert episode["terminated"][-1] or episode["truncated"][-1]
    unlimited, _ = avoiding_round(None)
    assert max(len(episode["action"]) for episode in unlimited) > last + 1  # without the budget, play went on

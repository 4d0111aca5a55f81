"""Batched rollouts: many envs step together and the policy is called once per step for all of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clonekit.envs.family import EnvFamily
from clonekit.errors import ConfigError
from clonekit.evaluation.stats import summarize
from clonekit.policies import Policy
from clonekit.seeding import derive_seed

# Called after every env step with (step, obs before the step, actions, policy state after acting).
StepHook = Callable[[int, np.ndarray, np.ndarray, Any], None]


class RolloutWatcher:
    """Follows a :func:`rollout` step by step and may stop episodes before their action executes.

    Subclass and override what you need (every method does nothing by default). Per wave of envs,
    :meth:`start_wave` comes first; then per step :meth:`before_step` sees the actions the policy chose and
    returns the slots to **halt** (or None): a halted episode ends there, unsuccessful, its chosen action
    never executed and the step not counted in its length (the vec env must have ``halt(mask)``, as BabyAI's
    does). :meth:`after_step` then gets the slots whose action did execute.
    """

    def start_wave(self, first: int, vec: Any) -> None:
        """A wave of ``vec.num_envs`` episodes starting at episode ``first`` was reset."""

    def before_step(self, obs: np.ndarray, actions: np.ndarray, state: Any, active: np.ndarray) -> np.ndarray | None:
        """``actions`` were chosen for the ``active`` slots; returns ``(B,)`` bool slots to halt, or None."""
        return None

    def after_step(self, executed: np.ndarray) -> None:
        """The env stepped; ``executed`` ``(B,)`` bool marks the slots whose action ran."""


@dataclass
class EpisodeResults:
    """Per-episode outcomes ``(N,)`` of a batched evaluation."""

    success: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    task_index: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self, seed: int = 0) -> dict[str, dict[str, Any]]:
        """``{"success": ..., "return": ..., "length": ...}`` each with mean, 95% interval, n, n_tasks and
        method; episodes that share a task are clustered (see :func:`clonekit.evaluation.stats.summarize`)."""
        return {
            "success": summarize(self.success.astype(bool), seed, groups=self.task_index),
            "return": summarize(self.returns, seed, iqm=True, groups=self.task_index),
            "length": summarize(self.lengths, seed, iqm=True, groups=self.task_index),
        }

    @staticmethod
    def concatenate(parts: list[EpisodeResults]) -> EpisodeResults:
        return EpisodeResults(
            success=np.concatenate([p.success for p in parts]),
            returns=np.concatenate([p.returns for p in parts]),
            lengths=np.concatenate([p.lengths for p in parts]),
            task_index=np.concatenate([p.task_index for p in parts]),
        )


def rollout(
    policy: Policy,
    family: EnvFamily,
    tasks: list[Any],
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    max_parallel: int = 256,
    on_step: StepHook | None = None,
    device: torch.device | str = "cpu",
    first_episode: int = 0,
    watcher: RolloutWatcher | None = None,
    on_episodes_end: Callable[[int], None] | None = None,
    episode_inputs: Mapping[str, np.ndarray] | None = None,
) -> EpisodeResults:
    """Play ``episodes`` episodes (episode ``k`` on ``tasks[k % len(tasks)]``), ``max_parallel`` at a time.

    A deterministic policy on tasks that fix their whole episode plays each task once (see
    :func:`episodes_to_play`): repeating it would copy the same outcome, not add evidence.

    The policy gets one batched call per env step for all slots of a wave, with its recurrent state carried
    across steps. Success means the episode ended by reaching its goal (``terminated`` with a positive
    reward; an episode that ends in a failure state, such as a crash, is ``terminated`` with reward 0).

    Each wave is seeded from ``seed`` and its first episode, so a slice of an evaluation can be played
    elsewhere and give the same episodes: ``first_episode`` (a multiple of ``max_parallel``) starts at that
    episode and plays ``first_episode .. episodes - 1`` only.

    ``watcher`` (a :class:`RolloutWatcher`) follows every step and may halt episodes before their action
    executes (pre-crime halting, see :func:`clonekit.evaluation.thoughts.thought_rollout`).

    ``on_episodes_end(n)`` is called after each env step at which ``n > 0`` episodes ended (e.g. to advance
    a progress bar): once per step of the batch, not per env.

    ``episode_inputs`` (``{name: (episodes, ...) array}``): inputs the caller gives the policy per episode
    besides ``obs`` and the env's own (e.g. the style asked of each episode); episode ``k`` gets row ``k`` of
    each, every step. Episodes then differ by more than their task, so none is skipped as a repeat.
    """
    env_kwargs = env_kwargs or {}
    if episode_inputs is None:
        episodes = episodes_to_play(policy, family, tasks, episodes, env_kwargs)
    else:
        for name, values in episode_inputs.items():
            if len(values) < episodes:
                raise ConfigError(
                    f"episode_inputs[{name!r}]: expected one row per episode ({episodes}), got {len(values)}"
                )
    parts = []
    policy.eval()
    for first in range(first_episode, episodes, max_parallel):
        ids = np.arange(first, min(first + max_parallel, episodes))
        task_index = ids % len(tasks)
        vec = family.make_vec([tasks[i] for i in task_index], **env_kwargs)
        obs = vec.reset(seed=derive_seed(seed, f"eval:{first}"))
        if watcher is not None:
            watcher.start_wave(first, vec)
        extra = _policy_inputs(vec, device)  # e.g. the goals of goal-reaching tasks (fixed for an episode)
        for name, values in (episode_inputs or {}).items():  # e.g. the style asked of each episode
            extra[name] = torch.from_numpy(np.ascontiguousarray(values[ids])).to(device)
        n = len(ids)
        state = policy.initial_state(n)
        active = np.ones(n, dtype=bool)
        success = np.zeros(n, dtype=bool)
        returns = np.zeros(n, dtype=np.float64)
        lengths = np.zeros(n, dtype=np.int64)
        step = 0
        with torch.inference_mode():  # entered once per wave: per step it costs as much as the bookkeeping
            while active.any():
                action_t, state = policy.act({"obs": torch.from_numpy(obs).to(device), **extra}, state)
                actions = action_t.cpu().numpy()
                if on_step is not None:
                    on_step(step, obs, actions, state)
                executed = active
                if watcher is not None:
                    stop = watcher.before_step(obs, actions, state, active)
                    if stop is not None and (stop := stop & active).any():
                        _halt(vec, stop)
                        executed = active & ~stop
                playing = active
                obs, reward, terminated, truncated = vec.step(actions)
                returns += np.where(executed, reward, 0.0)
                lengths += executed
                success |= executed & step_success(vec, terminated, reward)
                active = executed & ~(terminated | truncated)
                if on_episodes_end is not None and (ended := int(playing.sum() - active.sum())):
                    on_episodes_end(ended)
                if watcher is not None:
                    watcher.after_step(executed)
                step += 1
        parts.append(EpisodeResults(success=success, returns=returns, lengths=lengths, task_index=task_index))
    return EpisodeResults.concatenate(parts)


def episodes_to_play(
    policy: Any, family: Any, tasks: list[Any], episodes: int, env_kwargs: Mapping[str, Any] | None = None
) -> int:
    """How many of ``episodes`` are distinct outcomes: ``min(episodes, len(tasks))`` when the policy acts
    deterministically (its ``deterministic`` property) and the family's tasks fix their episodes with the env
    options ``env_kwargs`` (see :func:`tasks_fix_episodes`: reset's seed is unused and the dynamics have no
    noise); else all."""
    if getattr(policy, "deterministic", False) and tasks_fix_episodes(family, env_kwargs or {}):
        return min(episodes, len(tasks))
    return episodes


def tasks_fix_episodes(family: Any, env_kwargs: Mapping[str, Any]) -> bool:
    """Whether a task of ``family`` with the env options ``env_kwargs`` alone fixes its episode: the family's
    optional ``tasks_fix_episodes(**env_kwargs)`` when it has one (the answer depends on its options, e.g. a
    maze's start rule), else its ``deterministic_tasks`` attribute (default False)."""
    decide = getattr(family, "tasks_fix_episodes", None)
    if decide is not None:
        return bool(decide(**env_kwargs))
    return bool(getattr(family, "deterministic_tasks", False))


def check_run_fits_env(
    config_path: str, run_config: Mapping[str, Any], family: Any, env_kwargs: Mapping[str, Any]
) -> None:
    """One-line :class:`ConfigError` when the observations of ``family`` with ``env_kwargs`` do not have the shape the
    run's policy was trained on (its ``policy_config.obs_shape``, where it records one), e.g. a run evaluated with
    ``--env`` on another env. ``config_path`` names the run's ``config.json`` in the message."""
    expected = (run_config.get("policy_config") or {}).get("obs_shape")
    if expected is None:
        return
    found = tuple(family.spaces(**env_kwargs)[0].shape)
    if tuple(expected) != found:
        env = f"{family.name}:{env_kwargs['id']}" if "id" in env_kwargs else family.name
        raise ConfigError(
            f"{config_path}: policy_config.obs_shape: the policy was trained on observations of shape "
            f"{tuple(expected)}, but env {env} gives {found}"
        )


def step_success(vec: Any, terminated: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """``(B,)`` bool: which slots reached their goal on the last step.

    The env's own optional ``step_success()`` when it has one (e.g. a gymnasium env's ``info["success"]``);
    otherwise ``terminated`` with a positive reward (an episode that ends in a failure state, such as a
    crash, is ``terminated`` with reward 0 and is no success).
    """
    own = getattr(vec, "step_success", None)
    return np.asarray(own(), dtype=bool) if own is not None else terminated & (reward > 0)


def _halt(vec: Any, stop: np.ndarray) -> None:
    halt = getattr(vec, "halt", None)
    if halt is None:
        raise ConfigError(f"halting episodes: the env {type(vec).__name__} cannot halt episodes (it has no halt())")
    halt(stop)


def _policy_inputs(vec: Any, device: torch.device | str) -> dict[str, torch.Tensor]:
    """What an env gives the policy besides ``obs``, from its optional ``policy_inputs()`` (e.g. ``goal``)."""
    inputs = getattr(vec, "policy_inputs", None)
    return {name: torch.from_numpy(value).to(device) for name, value in inputs().items()} if inputs else {}

"""Adversarial observation attacks (FGSM and PGD in an L-infinity ball) and a policy wrapper that plays them.

Threat model, a *sensor attack*: at every step an adversary who knows the policy's weights adds a perturbation
to the observation the policy reads; the environment itself is not changed. The perturbation lies in an
L-infinity ball of radius ``epsilon`` measured in the policy's **normalized** observation space,
``(x - mean) / std`` with the statistics the policy stores (its ``normalizer``; a policy without one is
attacked in raw units), so a raw element moves by at most ``epsilon * std`` of its own feature or channel.
The perturbed observation is then clipped to the bounds of the observation space and handed to the policy
as **float32**: it is *not* rounded back to the space's dtype. (Maze observations are uint8 0/1 maps;
rounding would erase every perturbation smaller than 0.5.) The attacked policy therefore sees values inside
the Box bounds that the env itself never emits, as a noisy or tampered sensor would deliver them.

Attacks:

* ``fgsm``: one signed-gradient step of size ``epsilon`` from the clean observation.
* ``pgd``: ``steps`` signed-gradient steps of size ``step_size`` (default ``2.5 * epsilon / steps``), each
  projected back into the ball and the bounds, from a uniform random start in the ball (``random_start``).
  The last iterate is used.

Goals: *untargeted* (push the policy away from its clean action: maximize the cross-entropy of the clean
action, or for continuous actions the squared distance to it) or *targeted* (``target_action``: minimize
the cross-entropy of the target action, or the squared distance to the target vector). A per-step target
*behaviour* (e.g. "the move the expert rates worst") is a callable ``target_fn(obs) -> actions`` given to
:class:`AttackedPolicy`.

The gradient comes from a differentiable *score* the policy gives through its ``attack_scores`` hook (see
:class:`clonekit.policies.base.Policy`): BC's action logits; continuous BC's action (with chunk 1); for
procedure cloning, whose ``act`` runs an iterated search ending in an argmax, a surrogate (see
:mod:`clonekit.policies.procedure_cloning.attack`). Whether an attack reached its goal is always judged on
the policy's real ``act`` on the perturbed observation, never on the surrogate.

:func:`adversarial_batch` makes the perturbed observations for adversarial training: untargeted PGD that
maximizes the policy's own training loss (:class:`clonekit.train.TrainConfig` ``adversarial_*``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clonekit.config import check
from clonekit.errors import ConfigError
from clonekit.evaluation.rollout import (
    EpisodeResults,
    RolloutWatcher,
    check_run_fits_env,
    episodes_to_play,
    rollout,
)
from clonekit.evaluation.stats import summarize
from clonekit.nn import Normalizer
from clonekit.policies import Policy
from clonekit.policies.base import AttackScores
from clonekit.progress import progress_bar

ATTACKS = ("fgsm", "pgd")


@dataclass(frozen=True)
class AttackConfig:
    """An L-infinity observation attack (see the module docstring for the threat model).

    Args:
        method: ``"fgsm"`` (one step of size ``epsilon``) or ``"pgd"`` (``steps`` projected steps).
        epsilon: Radius of the L-infinity ball in the policy's normalized observation units; 0 attacks nothing.
        steps: PGD iterations (FGSM always takes one step).
        step_size: PGD step in normalized units; 0 means ``2.5 * epsilon / steps``.
        random_start: PGD starts from a uniform draw in the ball (FGSM starts from the clean observation).
        target_action: None for an untargeted attack; a discrete action (int) or, for continuous actions, a
            target action vector the attack pushes the policy towards.
        tolerance: Continuous actions only: a targeted attack succeeds at a step when the action is within
            this L-infinity distance of the target; an untargeted one when it is farther than this from the
            clean action.
    """

    method: str = "pgd"
    epsilon: float = 0.1
    steps: int = 10
    step_size: float = 0.0
    random_start: bool = True
    target_action: int | tuple[float, ...] | None = None
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        check(self.method in ATTACKS, "attack", f"one of {list(ATTACKS)}", self.method)
        check(math.isfinite(self.epsilon) and self.epsilon >= 0, "epsilon", "a finite number >= 0", self.epsilon)
        check(1 <= self.steps <= 10_000, "attack_steps", "in [1, 10000]", self.steps)
        check(
            math.isfinite(self.step_size) and self.step_size >= 0, "step_size", "a finite number >= 0", self.step_size
        )
        check(math.isfinite(self.tolerance) and self.tolerance > 0, "tolerance", "a finite number > 0", self.tolerance)
        if isinstance(self.target_action, tuple):
            check(
                len(self.target_action) >= 1 and all(math.isfinite(v) for v in self.target_action),
                "target_action",
                "finite numbers",
                self.target_action,
            )

    @property
    def iterations(self) -> int:
        return 1 if self.method == "fgsm" else self.steps

    @property
    def step(self) -> float:
        """The step size in normalized units."""
        if self.method == "fgsm":
            return self.epsilon
        return self.step_size or 2.5 * self.epsilon / self.steps


def check_target(attack: AttackConfig, action_space: gym.Space[Any]) -> None:
    """``ConfigError`` unless ``attack.target_action`` is None or an action of ``action_space``."""
    target = attack.target_action
    if target is None:
        return
    if isinstance(action_space, gym.spaces.Discrete):
        n, start = int(action_space.n), int(action_space.start)
        check(
            isinstance(target, int) and start <= target < start + n,
            "--target-action",
            f"a discrete action in [{start}, {start + n})",
            target,
        )
    elif isinstance(action_space, gym.spaces.Box):
        low, high = action_space.low.ravel(), action_space.high.ravel()
        ok = isinstance(target, tuple) and len(target) == low.size
        ok = ok and bool(np.all((np.asarray(target) >= low) & (np.asarray(target) <= high)))
        check(ok, "--target-action", f"{low.size} numbers within the action bounds [{low}, {high}]", target)
    else:
        raise ConfigError(f"--target-action: cannot target actions of space {action_space}")


def attack_from_options(
    method: str | None, epsilon: float | None, steps: int, target_action: str | None
) -> AttackConfig | None:
    """The attack the CLI flags ``--attack``, ``--epsilon``, ``--attack-steps`` and ``--target-action`` ask
    for (None without ``--attack``). ``target_action`` is an integer (a discrete action) or a JSON list of
    numbers (a continuous action); whether it lies in the action space is checked against the env."""
    if method is None:
        for flag, value in (("--epsilon", epsilon), ("--target-action", target_action)):
            if value is not None:
                raise ConfigError(f"{flag}: only used with --attack")
        return None
    if epsilon is None:
        raise ConfigError(f"--epsilon: required with --attack {method}, got none")
    target: int | tuple[float, ...] | None = None
    if target_action is not None:
        try:
            value = json.loads(target_action)
        except json.JSONDecodeError:
            value = target_action
        if isinstance(value, int) and not isinstance(value, bool):
            target = value
        elif isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            target = tuple(float(v) for v in value)
        else:
            raise ConfigError(
                f"--target-action: expected an integer action or a JSON list of numbers, got {target_action!r}"
            )
    return AttackConfig(method, epsilon, steps, target_action=target)


# --- the core: perturb observations to maximize a loss ------------------------------------------------------


def normalized_scale(policy: Policy, obs_shape: tuple[int, ...], device: torch.device | str) -> Tensor:
    """Raw size of one normalized unit of each observation element: the policy's ``std`` (broadcastable to
    ``(B, *obs_shape)``), or ones for a policy without a normalizer."""
    normalizer = getattr(policy, "normalizer", None)
    if isinstance(normalizer, Normalizer) and normalizer.mode != "none":
        return normalizer.std.detach().to(device=device, dtype=torch.float32)
    return torch.ones(obs_shape, device=device)


def perturb(
    obs: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    attack: AttackConfig,
    scale: Tensor,
    low: Tensor | None,
    high: Tensor | None,
    generator: torch.Generator,
) -> Tensor:
    """Observations ``(B, *obs_shape)`` float32 that maximize ``loss_fn`` within the attack's ball.

    ``loss_fn(x)`` returns a scalar (e.g. a sum of per-sample losses: each sample's gradient is its own);
    ``scale`` is the raw size of one normalized unit (see :func:`normalized_scale`); ``low``/``high`` are the
    observation bounds (broadcastable; None for unbounded). ``obs`` is not modified.
    """
    clean = obs.detach().float()
    if attack.epsilon == 0:
        return clean.clone()
    radius = attack.epsilon * scale

    def project(x: Tensor) -> Tensor:
        x = torch.maximum(torch.minimum(x, clean + radius), clean - radius)
        if low is not None and high is not None:
            x = torch.maximum(torch.minimum(x, high), low)
        return x

    x = clean.clone()
    if attack.method == "pgd" and attack.random_start:
        noise = torch.rand(clean.shape, generator=generator).to(clean.device) * 2 - 1
        x = project(clean + noise * radius)
    for _ in range(attack.iterations):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x), x)
        x = project(x.detach() + attack.step * scale * grad.sign())
    return x.detach()


# --- differentiable scores of each policy ------------------------------------------------------------------

# ``maker(policy, clean_inputs)`` returns ``scores(inputs)``: for inputs whose float32 ``"obs"`` requires grad,
# differentiable logits (B, num_actions) for discrete actions or actions (B, action_dim) for continuous ones.
# The maker may precompute from the clean inputs what the scores hold fixed (it is called once per attack).
Scores = AttackScores
ScoreFn = Callable[[Any, dict[str, Tensor]], Scores]


def _score_fn(policy: Policy) -> ScoreFn:
    """``policy.attack_scores`` as a :data:`ScoreFn`; a policy without differentiable scores is a clear error."""

    def scores_of(attacked: Policy, clean: dict[str, Tensor]) -> Scores:
        scores = attacked.attack_scores(clean)
        if scores is None:
            raise ConfigError(
                f"attack: policy {attacked.name!r} has no differentiable scores to attack "
                "(its attack_scores() returns None)"
            )
        return scores

    if type(policy).attack_scores is Policy.attack_scores:
        raise ConfigError(
            f"attack: policy {policy.name!r} has no differentiable scores to attack (it defines no attack_scores())"
        )
    return scores_of


# --- the wrapper ------------------------------------------------------------------------------------------


class AttackedPolicy(Policy):
    """``policy`` whose every observation is perturbed by ``attack`` before it acts.

    Plays in :func:`clonekit.evaluation.rollout` unchanged (``act`` enables gradients itself, since rollouts
    run under ``torch.inference_mode``). Per call it records ``last_goal_reached`` ``(B,)`` bool: the
    targeted action was taken (targeted), or the action differs from the one the policy takes on the clean
    observation with the same state (untargeted). Slots in ``skip`` ``(B,)`` (set by :class:`AttackWatcher`:
    episodes that already ended) are not attacked.

    ``low``/``high`` are the observation space's bounds; ``target_fn(obs) -> (B,) actions`` (optional) gives
    a per-step target instead of ``attack.target_action``. ``seed`` seeds PGD's random starts.
    """

    name = "attacked"
    low: Tensor
    high: Tensor

    def __init__(
        self,
        policy: Policy,
        attack: AttackConfig,
        observation_space: gym.spaces.Box,
        action_space: gym.Space[Any],
        seed: int = 0,
        target_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_target(attack, action_space)
        self.policy = policy
        self.config = attack
        self.score_fn = _score_fn(policy)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.target_fn = target_fn
        self.register_buffer("low", torch.as_tensor(observation_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.as_tensor(observation_space.high, dtype=torch.float32), persistent=False)
        self.generator = torch.Generator().manual_seed(seed)
        self.skip: np.ndarray | None = None
        self.last_goal_reached = np.zeros(0, dtype=bool)

    @property
    def deterministic(self) -> bool:
        """The wrapped policy is deterministic and the attack draws no random start."""
        random_start = self.config.method == "pgd" and self.config.random_start and self.config.epsilon > 0
        return bool(self.policy.deterministic) and not random_start

    def initial_state(self, batch_size: int) -> Any:
        return self.policy.initial_state(batch_size)

    def _target(self, obs: Tensor) -> Tensor | None:
        if self.target_fn is not None:
            return self.target_fn(obs)
        target = self.config.target_action
        if target is None:
            return None
        value = torch.as_tensor(target, device=obs.device)
        return value.expand(obs.shape[0], *value.shape) if self.discrete else value.float().expand(obs.shape[0], -1)

    def _goal_reached(self, action: Tensor, clean: Tensor, target: Tensor | None) -> Tensor:
        tol = self.config.tolerance
        if self.discrete:
            return action == target if target is not None else action != clean
        if target is not None:
            return (action.float() - target).abs().flatten(1).amax(1) <= tol
        return (action.float() - clean.float()).abs().flatten(1).amax(1) > tol

    def attack_obs(self, obs: dict[str, Tensor], clean_action: Tensor, target: Tensor | None) -> Tensor:
        """Perturbed ``obs["obs"]`` ``(B, *obs_shape)`` float32 for the attack's goal."""
        with torch.inference_mode(False), torch.enable_grad():
            inputs = {k: v.clone() for k, v in obs.items()}  # inference tensors cannot enter autograd
            clean = inputs.pop("obs").float()
            wanted = (target if target is not None else clean_action).clone()
            sign = 1.0 if target is not None else -1.0  # minimize the distance to a target, maximize it otherwise

            scores_of = self.score_fn(self.policy, {"obs": clean, **inputs})

            def loss(x: Tensor) -> Tensor:
                scores = scores_of({"obs": x, **inputs})
                if self.discrete:
                    distance = F.cross_entropy(scores, wanted.long(), reduction="sum")
                else:
                    distance = (scores - wanted.float()).square().sum()
                return -sign * distance

            scale = normalized_scale(self.policy, tuple(clean.shape[1:]), clean.device)
            return perturb(clean, loss, self.config, scale, self.low, self.high, self.generator)

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        x = obs["obs"]
        clean_action, _ = self.policy.act(obs, state)
        target = self._target(x)
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        if self.skip is not None and len(self.skip) == x.shape[0]:
            todo = torch.from_numpy(~self.skip).to(x.device)
        adv = x.float().clone()
        if bool(todo.any()):
            idx = todo.nonzero().squeeze(1)
            part = {k: v[idx] for k, v in obs.items()}
            adv[idx] = self.attack_obs(part, clean_action[idx], None if target is None else target[idx])
        action, new_state = self.policy.act({**obs, "obs": adv}, state)
        reached = self._goal_reached(action, clean_action, target) & todo
        self.last_goal_reached = reached.cpu().numpy()
        return action, new_state


class AttackWatcher(RolloutWatcher):
    """Counts, per episode, the steps at which the :class:`AttackedPolicy` reached its goal.

    Also tells the policy which slots have ended, so their observations are not attacked in vain.
    """

    def __init__(self, attacked: AttackedPolicy) -> None:
        self.attacked = attacked
        self.hits: list[np.ndarray] = []
        self.steps: list[np.ndarray] = []

    def start_wave(self, first: int, vec: Any) -> None:
        self.hits.append(np.zeros(vec.num_envs, dtype=np.int64))
        self.steps.append(np.zeros(vec.num_envs, dtype=np.int64))
        self.attacked.skip = None

    def before_step(self, obs: np.ndarray, actions: np.ndarray, state: Any, active: np.ndarray) -> np.ndarray | None:
        self.hits[-1] += self.attacked.last_goal_reached & active
        self.steps[-1] += active
        self.attacked.skip = ~active  # an episode that ended never acts again
        return None

    def rates(self) -> np.ndarray:
        """Per-episode fraction ``(N,)`` of attacked steps at which the attack reached its goal."""
        return np.concatenate(self.hits) / np.maximum(np.concatenate(self.steps), 1)


def attacked_rollout(
    policy: Policy,
    family: Any,
    tasks: list[Any],
    episodes: int,
    seed: int,
    attack: AttackConfig,
    env_kwargs: dict[str, Any] | None = None,
    max_parallel: int = 256,
    target_fn: Callable[[Tensor], Tensor] | None = None,
    on_episodes_end: Callable[[int], None] | None = None,
) -> EpisodeResults:
    """:func:`clonekit.evaluation.rollout` of ``policy`` under ``attack`` (same episodes as a clean rollout
    with the same ``seed``); ``extra["attack_success"]`` holds each episode's attack success rate.
    ``on_episodes_end`` as in :func:`clonekit.evaluation.rollout`."""
    env_kwargs = env_kwargs or {}
    observation_space, action_space = family.spaces(**env_kwargs)
    if not isinstance(observation_space, gym.spaces.Box):
        raise ConfigError(f"attack: expected a Box observation space, got {observation_space}")
    attacked = AttackedPolicy(policy, attack, observation_space, action_space, seed, target_fn)
    watcher = AttackWatcher(attacked)
    results = rollout(
        attacked,
        family,
        tasks,
        episodes,
        seed,
        env_kwargs,
        max_parallel=max_parallel,
        watcher=watcher,
        on_episodes_end=on_episodes_end,
    )
    results.extra["attack_success"] = watcher.rates()
    return results


def attack_metrics(results: EpisodeResults, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"success", "attack_success"}`` of an :func:`attacked_rollout`, each with mean, 95% interval, n,
    n_tasks and method (episodes that share a task are clustered)."""
    return {
        "success": summarize(results.success.astype(bool), seed, groups=results.task_index),
        "attack_success": summarize(results.extra["attack_success"], seed, groups=results.task_index),
    }


def evaluate_attack_run(
    run_dir: str | Path,
    split: str,
    episodes: int,
    seed: int,
    attack: AttackConfig,
    num_tasks: int | None = None,
    max_parallel: int = 256,
    env: str | None = None,
    show_progress: bool = False,
) -> EpisodeResults:
    """Load the policy of ``run_dir`` and play ``episodes`` episodes on ``split`` under ``attack`` (the
    episodes :func:`clonekit.evaluation.evaluate_run` plays with the same arguments); ``show_progress``
    shows a progress bar of finished episodes on stderr."""
    from clonekit.checkpoint import load_policy, load_run_config
    from clonekit.envs import default_num_tasks, env_block_for_eval, get_env_family
    from clonekit.evaluation import split_tasks

    if episodes < 1:
        raise ConfigError(f"--episodes: expected >= 1, got {episodes}")
    if max_parallel < 1:
        raise ConfigError(f"--batch-size: expected >= 1, got {max_parallel}")
    config = load_run_config(Path(run_dir))
    env_block = env_block_for_eval(config.get("dataset", {}).get("env", {}), env)
    policy = load_policy(run_dir)
    family = get_env_family(env_block.get("id", ""))
    check_run_fits_env(str(Path(run_dir) / "config.json"), config, family, env_block.get("kwargs", {}))
    tasks = split_tasks(
        env_block, split, seed, default_num_tasks(family, episodes, 25) if num_tasks is None else num_tasks
    )
    total = episodes_to_play(policy, family, tasks, episodes, env_block.get("kwargs", {}))
    with progress_bar(f"eval {split} under {attack.method}", total=total, enabled=show_progress) as advance:
        return attacked_rollout(
            policy,
            family,
            tasks,
            episodes,
            seed,
            attack,
            env_block.get("kwargs", {}),
            max_parallel,
            on_episodes_end=advance if show_progress else None,
        )


# --- adversarial training --------------------------------------------------------------------------------


def adversarial_batch(
    model: Policy,
    batch: dict[str, Tensor],
    attack: AttackConfig,
    fraction: float,
    low: Tensor | None,
    high: Tensor | None,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """A copy of ``batch`` whose first ``ceil(fraction * B)`` observations are replaced by untargeted
    ``attack`` perturbations that maximize ``model.compute_loss`` (the rest stay clean); ``obs`` becomes
    float32. ``batch`` is not modified; parameter gradients are not touched."""
    obs = batch["obs"].float()
    count = math.ceil(fraction * obs.shape[0])
    part = {k: v[:count] for k, v in batch.items()}

    def loss(x: Tensor) -> Tensor:
        return model.compute_loss({**part, "obs": x})[0]

    scale = normalized_scale(model, tuple(obs.shape[1:]), obs.device)
    perturbed = perturb(obs[:count], loss, attack, scale, low, high, generator)
    return {**batch, "obs": torch.cat([perturbed, obs[count:]])}


__all__ = [
    "ATTACKS",
    "AttackConfig",
    "AttackWatcher",
    "AttackedPolicy",
    "adversarial_batch",
    "attack_from_options",
    "attack_metrics",
    "attacked_rollout",
    "check_target",
    "evaluate_attack_run",
    "normalized_scale",
    "perturb",
]

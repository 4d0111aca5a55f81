"""In-context RL (ReLIC-lite): PPO trains a transformer whose context spans several trials of one task.

Each update plays ``num_envs`` whole episodes of hidden-goal tasks (:mod:`clonekit.envs.hidden_goal`; an episode
is ``trials`` trials of one task, drawn from the training tasks) with the ``relic`` policy
(:mod:`clonekit.policies.relic`), then runs PPO's clipped objective with GAE over them. The discount runs on
across trial boundaries (they are not terminal): a trial that explores well pays off in the next trials'
rewards, which is what teaches the agent to use its context (RL^2). What we kept of ReLIC (Elawady et al.
2024) and what we left out:

* kept: a transformer policy over a context of several episodes of the same task, trained by PPO on many
  tasks with the context *not* reset at episode (trial) boundaries; Sink-KV (a learned sink key and value per
  layer and head in the attention softmax).
* left out: *partial updates* (updating every few hundred steps inside a context far longer than a rollout,
  with the earlier context as fixed input). Our contexts (``trials * trial_steps`` steps, tens) fit in one
  rollout, so every update sees whole episodes and partial updates would change nothing. Also left out: their
  scale (64k-step contexts, embodied scenes, image encoders).

Why not :func:`clonekit.rl.ppo.train_ppo` with its hooks: its actor is a per-step ``bc``/``continuous_bc``
policy fed one observation per step from a flat ``(T, N)`` buffer, and its minibatches mix single steps of
different episodes; a context policy needs whole episodes in every minibatch and its own action history as
input, which neither ``init_actor`` nor ``make_envs`` can give. The loop here follows PPO's (same loss, GAE,
clipping, gradient clipping, Adam with linear decay) over ``(episodes, steps)`` tensors with a mask for the
steps after an episode ended; GAE is written again for that mask (PPO's ``_gae`` is ``(T, N)`` with episode
ends, no padding).

Run directory (:mod:`clonekit.checkpoint`): ``config.json`` names the policy ``relic`` (``load_policy(RUN)`` gives
the trained policy; its weights include the value head), ``checkpoints/step_*`` hold the weights, Adam's state
and ``trainer.json`` (iteration, episode count, the sampling generator's state), ``metrics.jsonl`` one line per
update. Exact resume: the tasks of update ``i`` are drawn from a generator seeded by ``(seed, i)`` and every
episode starts fresh each update, so a run resumed from a checkpoint ends with the same weights as one never
interrupted (same torch build and thread count).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch

from clonekit.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    TRAINER_FILE,
    atomic_save_tensors,
    load_policy,
    load_run_config,
    load_state_into,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_json,
    write_checkpoint,
)
from clonekit.config import check, check_same_config, check_transformer, config_to_json
from clonekit.envs.hidden_goal import (
    NEW_TRIAL_FEATURE,
    REWARD_FEATURE,
    HiddenGoalSpec,
    HiddenGoalTask,
    HiddenGoalVecEnv,
)
from clonekit.envs.maze import NUM_ACTIONS
from clonekit.errors import CheckpointError, ConfigError
from clonekit.policies.relic import RelicConfig, RelicPolicy
from clonekit.progress import progress_bar
from clonekit.rl.run import open_rl_run, rl_run_config
from clonekit.seeding import derive_seed
from clonekit.train import ScalarLog, clip_grad_norm

ALGORITHM = "incontext_ppo"
ENV_ID = "hidden_goal"


@dataclass(frozen=True)
class InContextPPOConfig:
    """PPO over whole multi-trial episodes, and the ``relic`` network it trains.

    Args:
        iterations: Updates; each plays ``num_envs`` whole episodes first.
        num_envs: Episodes (tasks drawn with replacement from the training tasks) per update.
        gamma: Discount factor, running on across trials.
        gae_lambda: GAE's lambda.
        lr: Adam learning rate (decays linearly to 0 over the run with ``anneal_lr``).
        anneal_lr: Decay the learning rate linearly to 0.
        update_epochs: Passes over each update's episodes.
        num_minibatches: Minibatches of whole episodes per pass (must divide ``num_envs``).
        clip_coef: Clipping range of the probability ratio (and of the value update).
        ent_coef: Weight of the entropy bonus (exploration within a trial needs some).
        vf_coef: Weight of the value loss.
        max_grad_norm: Clip the global gradient norm to this value.

        d_model: Token width of the transformer.
        num_heads: Attention heads (must divide ``d_model``).
        num_layers: Transformer layers.
        feedforward: Feed-forward width of each layer.
        sink_kv: Learned sink key/value in every attention layer (ReLIC's Sink-KV).
        memory: ``"episode"``: the context spans all trials; ``"trial"``: cut at each trial (no-memory baseline).

        seed: Seeds the network's initialization, the actions drawn, the minibatches and the tasks drawn.
        checkpoint_every: Updates between resumable checkpoints (also at the end).
        keep_checkpoints: How many checkpoints to keep.
    """

    iterations: int = 500
    num_envs: int = 64
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 5e-4
    anneal_lr: bool = True
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5

    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    feedforward: int = 128
    sink_kv: bool = True
    memory: Literal["episode", "trial"] = "episode"

    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        check(self.iterations >= 1, "iterations", ">= 1", self.iterations)
        check(1 <= self.num_envs <= 65536, "num_envs", "in [1, 65536]", self.num_envs)
        check(0 < self.gamma <= 1, "gamma", "in (0, 1]", self.gamma)
        check(0 <= self.gae_lambda <= 1, "gae_lambda", "in [0, 1]", self.gae_lambda)
        check(self.lr > 0 and math.isfinite(self.lr), "lr", "a finite number > 0", self.lr)
        check(self.update_epochs >= 1, "update_epochs", ">= 1", self.update_epochs)
        check(
            1 <= self.num_minibatches <= self.num_envs and self.num_envs % self.num_minibatches == 0,
            "num_minibatches",
            f"a divisor of num_envs = {self.num_envs}",
            self.num_minibatches,
        )
        check(self.clip_coef > 0, "clip_coef", "> 0", self.clip_coef)
        check(self.ent_coef >= 0, "ent_coef", ">= 0", self.ent_coef)
        check(self.vf_coef >= 0, "vf_coef", ">= 0", self.vf_coef)
        check(self.max_grad_norm > 0, "max_grad_norm", "> 0", self.max_grad_norm)
        widths = {"d_model": self.d_model, "num_heads": self.num_heads, "num_layers": self.num_layers}
        check_transformer(SimpleNamespace(**widths, feedforward=self.feedforward, dropout=0.0), "d_model")
        check(self.memory in ("episode", "trial"), "memory", "'episode' or 'trial'", self.memory)
        check(self.checkpoint_every >= 1, "checkpoint_every", ">= 1", self.checkpoint_every)
        check(self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1", self.keep_checkpoints)

    def policy_config(self, spec: HiddenGoalSpec) -> RelicConfig:
        """The ``relic`` config of this network for episodes of ``spec``."""
        return RelicConfig(
            obs_dim=spec.obs_dim,
            num_actions=NUM_ACTIONS,
            new_trial_feature=NEW_TRIAL_FEATURE,
            reward_feature=REWARD_FEATURE,
            d_model=self.d_model,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            feedforward=self.feedforward,
            max_context=spec.max_steps,
            sink_kv=self.sink_kv,
            memory=self.memory,
        )


def tasks_fingerprint(tasks: list[HiddenGoalTask]) -> str:
    """A content hash of a task list (layouts, starts, goals, order), recorded so a resume checks its tasks."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(task.walls.astype(np.uint8).tobytes() + bytes([*task.start, *task.goal]))
    return digest.hexdigest()[:16]


@dataclass
class Episodes:
    """One update's episodes, right-padded to ``T`` steps: every tensor is ``(N, T)`` (``obs`` ``(N, T, D)``)."""

    obs: torch.Tensor
    prev_actions: torch.Tensor
    actions: torch.Tensor
    log_prob: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    trial: torch.Tensor
    valid: torch.Tensor


def play_episodes(
    policy: RelicPolicy, spec: HiddenGoalSpec, tasks: list[HiddenGoalTask], generator: torch.Generator | None
) -> Episodes:
    """One whole episode per task, all stepped together; actions drawn from the policy with ``generator`` (None:
    the most likely action). Each step computes only its new token (the context's keys and values are cached)."""
    env = HiddenGoalVecEnv(spec, tasks)
    n, horizon = len(tasks), spec.max_steps
    obs = torch.zeros(n, horizon, spec.obs_dim)
    prev_actions = torch.full((n, horizon), policy.no_action, dtype=torch.long)
    actions = torch.zeros(n, horizon, dtype=torch.long)
    log_prob, values, rewards = (torch.zeros(n, horizon) for _ in range(3))
    trial = torch.zeros(n, horizon, dtype=torch.long)
    valid = torch.zeros(n, horizon, dtype=torch.bool)
    current = torch.from_numpy(env.reset())
    context = policy.initial_state(n)
    steps = 0
    with torch.no_grad():
        for t in range(horizon):
            if env.done.all():
                break
            valid[:, t] = torch.from_numpy(~env.done)
            trial[:, t] = torch.from_numpy(env.trial_index)
            obs[:, t], prev_actions[:, t] = current, context.last_action
            logits, value, context = policy.step(current, context)
            log_p = torch.log_softmax(logits, -1)
            if generator is None:
                action = log_p.argmax(-1)
            else:
                action = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1)
            context = policy.record_action(context, action)
            next_obs, reward, _, _ = env.step(action.numpy())
            actions[:, t], log_prob[:, t], values[:, t] = action, log_p.gather(1, action[:, None]).squeeze(1), value
            rewards[:, t] = torch.from_numpy(reward)
            current = torch.from_numpy(next_obs)
            steps = t + 1
    cut = slice(0, steps)
    return Episodes(
        obs[:, cut], prev_actions[:, cut], actions[:, cut], log_prob[:, cut], values[:, cut], rewards[:, cut],
        trial[:, cut], valid[:, cut],
    )  # fmt: skip


def trial_success(episodes: Episodes, trials: int) -> np.ndarray:
    """``(N, trials)`` bool: which trials of each episode reached the goal (a reward inside the trial)."""
    hit = (episodes.rewards > 0) & episodes.valid
    success = np.zeros((len(hit), trials), dtype=bool)
    rows, cols = np.nonzero(hit.numpy())
    success[rows, episodes.trial.numpy()[rows, cols]] = True
    return success


def masked_gae(episodes: Episodes, gamma: float, gae_lambda: float) -> torch.Tensor:
    """GAE advantages ``(N, T)`` over right-padded episodes; an episode's last valid step is terminal (its
    last trial ended), and trial ends inside it are not."""
    valid = episodes.valid.float()
    advantages = torch.zeros_like(episodes.rewards)
    following_value = torch.zeros(len(valid))
    following_advantage = torch.zeros(len(valid))
    for t in reversed(range(valid.shape[1])):
        live_next = valid[:, t + 1] if t + 1 < valid.shape[1] else torch.zeros(len(valid))
        delta = episodes.rewards[:, t] + gamma * following_value * live_next - episodes.values[:, t]
        following_advantage = (delta + gamma * gae_lambda * live_next * following_advantage) * valid[:, t]
        advantages[:, t] = following_advantage
        following_value = episodes.values[:, t]
    return advantages


def train_incontext(
    config: InContextPPOConfig,
    spec: HiddenGoalSpec,
    tasks: list[HiddenGoalTask],
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
) -> RelicPolicy:
    """Train ``relic`` on episodes of ``tasks`` (of ``spec``) into run directory ``out``; return the policy.

    With ``resume=True`` an existing run continues from its newest checkpoint (its recorded config, env spec and
    tasks must be these); without it an existing non-empty ``out`` is an error.
    """
    if not tasks:
        raise ConfigError("tasks: expected at least one training task, got none")
    run_dir = Path(out)
    fingerprint = tasks_fingerprint(tasks)
    existing = run_dir.exists() and any(run_dir.iterdir())
    if existing and not resume:
        raise CheckpointError(f"{run_dir}: already exists; pass --resume to continue it, or choose another --out")
    if existing:
        recorded = load_run_config(run_dir)
        if recorded.get("algorithm") != ALGORITHM:
            raise CheckpointError(f"{run_dir / CONFIG_FILE}: not an in-context PPO run ({recorded.get('algorithm')!r})")
        check_same_config(config, recorded.get("incontext_config"), str(run_dir / CONFIG_FILE))
        check_same_config(spec, recorded["dataset"]["env"].get("kwargs"), str(run_dir / CONFIG_FILE) + " env")
        if recorded["dataset"].get("fingerprint") != fingerprint:
            raise CheckpointError(f"{run_dir / CONFIG_FILE}: the run was started on other training tasks")
    torch.manual_seed(config.seed)
    policy = RelicPolicy(config.policy_config(spec))
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5)
    generator = torch.Generator().manual_seed(derive_seed(config.seed, ALGORITHM))
    dataset = {"fingerprint": fingerprint, "env": {"id": ENV_ID, "kwargs": config_to_json(spec)}}
    run_config = rl_run_config(policy, ALGORITHM, config.seed, dataset, incontext_config=config_to_json(config))
    start = open_rl_run(run_dir, run_config, lambda last: _restore(last, policy, optimizer, generator))
    if start >= config.iterations and (run_dir / MODEL_FILE).is_file():
        return load_policy(run_dir)  # type: ignore[return-value]
    scalars = ScalarLog(run_dir, start * config.num_envs, tensorboard=False)
    try:
        with progress_bar("incontext", total=config.iterations, enabled=show_progress) as advance:
            advance(start)
            for iteration in range(start + 1, config.iterations + 1):
                if config.anneal_lr:
                    optimizer.param_groups[0]["lr"] = config.lr * (1.0 - (iteration - 1) / config.iterations)
                rng = np.random.default_rng(derive_seed(config.seed, f"{ALGORITHM}:tasks:{iteration}"))
                picked = [tasks[i] for i in rng.integers(len(tasks), size=config.num_envs)]
                policy.eval()
                episodes = play_episodes(policy, spec, picked, generator)
                info = _update(config, policy, optimizer, generator, episodes)
                success = trial_success(episodes, spec.trials).mean(axis=0)
                info |= {f"success_trial_{j + 1}": float(s) for j, s in enumerate(success)}
                info["env_steps"] = float(episodes.valid.sum())
                info["lr"] = float(optimizer.param_groups[0]["lr"])
                scalars.log(iteration * config.num_envs, info)
                advance(1, first=info["success_trial_1"], last=info[f"success_trial_{spec.trials}"])
                if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                    _checkpoint(run_dir, iteration, policy, optimizer, generator, config.keep_checkpoints)
    finally:
        scalars.close()
    atomic_save_tensors(dict(policy.state_dict()), run_dir / MODEL_FILE)
    policy.eval()
    return policy


def _update(
    config: InContextPPOConfig,
    policy: RelicPolicy,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    episodes: Episodes,
) -> dict[str, float]:
    """``update_epochs`` passes of PPO over minibatches of whole episodes; returns the scalars to log."""
    advantages = masked_gae(episodes, config.gamma, config.gae_lambda)
    returns = advantages + episodes.values
    size = config.num_envs // config.num_minibatches
    parameters = list(policy.parameters())
    stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl")}
    policy.train()
    for _ in range(config.update_epochs):
        order = torch.randperm(config.num_envs, generator=generator)
        for first in range(0, config.num_envs, size):
            mb = order[first : first + size]
            valid = episodes.valid[mb]
            count = valid.sum().clamp(min=1)
            logits, value = policy.forward_sequence(episodes.obs[mb], episodes.prev_actions[mb])
            log_p = torch.log_softmax(logits, -1)
            log_prob = log_p.gather(2, episodes.actions[mb][..., None]).squeeze(2)
            entropy = -(log_p.exp() * log_p).sum(-1)
            log_ratio = (log_prob - episodes.log_prob[mb]) * valid
            ratio = log_ratio.exp()
            adv = advantages[mb]
            mean = (adv * valid).sum() / count
            std = (((adv - mean) * valid).square().sum() / count).sqrt()
            adv = (adv - mean) / (std + 1e-8)
            surrogate = torch.max(-adv * ratio, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef))
            policy_loss = (surrogate * valid).sum() / count
            old = episodes.values[mb]
            clipped = old + (value - old).clamp(-config.clip_coef, config.clip_coef)
            value_error = torch.max((value - returns[mb]).square(), (clipped - returns[mb]).square())
            value_loss = 0.5 * (value_error * valid).sum() / count
            entropy_mean = (entropy * valid).sum() / count
            loss = policy_loss - config.ent_coef * entropy_mean + config.vf_coef * value_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm(parameters, config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                approx_kl = float((((ratio - 1) - log_ratio) * valid).sum() / count)
            for key, value_ in (
                ("policy_loss", float(policy_loss.detach())),
                ("value_loss", float(value_loss.detach())),
                ("entropy", float(entropy_mean.detach())),
                ("approx_kl", approx_kl),
            ):
                stats[key].append(value_)
    info = {key: float(np.mean(values)) for key, values in stats.items()}
    if not all(math.isfinite(v) for v in info.values()):
        raise ConfigError(f"in-context PPO diverged: {info}; lower lr")
    return info


def _checkpoint(
    run_dir: Path,
    iteration: int,
    policy: RelicPolicy,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    keep: int,
) -> None:
    tensors, rest = optimizer_to_tensors(optimizer.state_dict())
    trainer = {"iteration": iteration, "optimizer": rest, "rng": {"generator": generator.get_state().tolist()}}
    write_checkpoint(run_dir, iteration, dict(policy.state_dict()), tensors, trainer, keep)


def _restore(directory: Path, policy: RelicPolicy, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
    """Load checkpoint ``directory`` into the policy, optimizer and generator; returns its iteration."""
    load_state_into(policy, load_tensors(directory / MODEL_FILE), directory / MODEL_FILE)
    trainer = read_json(directory / TRAINER_FILE, "trainer state")
    try:
        optimizer.load_state_dict(
            optimizer_from_tensors(load_tensors(directory / OPTIMIZER_FILE), trainer["optimizer"])
        )
        generator.set_state(torch.tensor(trainer["rng"]["generator"], dtype=torch.uint8))
        return int(trainer["iteration"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{directory / TRAINER_FILE}: expected an in-context PPO trainer state ({err})") from err


def evaluate_trials(
    policy: RelicPolicy,
    spec: HiddenGoalSpec,
    tasks: list[HiddenGoalTask],
    seed: int,
    episodes_per_task: int = 1,
    sample: bool = True,
) -> dict[str, Any]:
    """Play ``episodes_per_task`` episodes of every task (one batch) and return per-trial outcomes.

    Returns ``{"success": (E, trials) bool, "steps": (E, trials) int (steps the trial took), "task_index":
    (E,) int}`` with ``E = len(tasks) * episodes_per_task`` (episode ``e`` plays task ``e % len(tasks)``).
    ``sample``: draw actions from the policy's distribution (the policy PPO trained; a seeded generator), else
    take the most likely one (``act``'s choice)."""
    picked = [tasks[e % len(tasks)] for e in range(len(tasks) * episodes_per_task)]
    generator = torch.Generator().manual_seed(derive_seed(seed, "incontext:evaluate")) if sample else None
    policy.eval()
    episodes = play_episodes(policy, spec, picked, generator)
    steps = np.zeros((len(picked), spec.trials), dtype=np.int64)
    valid, trial = episodes.valid.numpy(), episodes.trial.numpy()
    for j in range(spec.trials):
        steps[:, j] = ((trial == j) & valid).sum(axis=1)
    return {
        "success": trial_success(episodes, spec.trials),
        "steps": steps,
        "task_index": np.arange(len(picked)) % len(tasks),
    }


__all__ = [
    "ALGORITHM",
    "ENV_ID",
    "Episodes",
    "InContextPPOConfig",
    "evaluate_trials",
    "masked_gae",
    "play_episodes",
    "tasks_fingerprint",
    "train_incontext",
    "trial_success",
]

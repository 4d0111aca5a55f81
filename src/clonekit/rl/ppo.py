"""PPO (clipped objective, GAE, minibatch epochs) on vectorized gymnasium envs, under clonekit's run format.

Reads top to bottom as CleanRL's ``ppo.py`` does: collect ``num_steps`` steps from ``num_envs`` envs, compute
GAE advantages, then ``update_epochs`` passes of minibatch updates. Differences worth knowing:

* autoreset is gymnasium's ``SAME_STEP`` mode (see :mod:`clonekit.rl.vector`), and a *truncated* episode (time
  limit) is bootstrapped: its last reward gets ``gamma * V(final observation)`` added, as Stable-Baselines3 does;
* continuous actions are drawn in the actor's [-1, 1] units and clipped and scaled to the env's bounds when
  executed (the log-probability is of the unclipped draw);
* with ``config.prior`` the loss adds the demonstration-regularization term of :mod:`clonekit.rl.prior`;
* with a ``reward_model`` (:class:`RewardModel`, e.g. a discriminator of :mod:`clonekit.rl.adversarial`) each
  rollout's rewards are the model's instead of the env's (the env's still make the logged ``episode_return``);
  the model may train on the rollout first, and its state is checkpointed with the run's.

The run directory is clonekit's (:mod:`clonekit.checkpoint`): ``config.json`` names the actor's policy
(``bc`` or ``continuous_bc``) and its config, so ``load_policy(RUN)`` returns the trained actor;
``model.safetensors`` holds the actor's weights; ``checkpoints/step_*`` hold the whole actor-critic, Adam's
state and ``trainer.json`` (iteration, env steps, the RNG states); ``metrics.jsonl`` one line per update.

Exact resume: a run continued from a checkpoint ends with the same weights as one never interrupted (same
torch build and thread count). That covers the networks, Adam, the torch generator that draws actions and
minibatches, and the env step count. Env state cannot be saved in general, so at every checkpoint the envs
are reset with seeds derived from ``config.seed`` and the step count, in the uninterrupted run as in the
resumed one: the episodes running at a checkpoint end there (their last rollout already bootstrapped from the
value of where they stood). Deterministic envs (their randomness from the reset seed) then replay exactly.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
from clonekit.config import check_same_config, config_to_json
from clonekit.errors import CheckpointError, ConfigError
from clonekit.policies.continuous_bc import ContinuousBCPolicy
from clonekit.progress import progress_bar
from clonekit.rl.agent import Actor, ActorCritic, new_actor
from clonekit.rl.config import PPOConfig
from clonekit.rl.prior import DemoPrior
from clonekit.rl.run import open_rl_run, rl_run_config
from clonekit.rl.vector import EnvFactory, VectorEnv, gym_env_factories
from clonekit.seeding import derive_seed
from clonekit.train import ScalarLog, clip_grad_norm

ALGORITHM = "ppo"
# on_update(env_steps, actor): called after every update (and with 0 before the first one of a fresh run), e.g.
# to evaluate the actor every N env steps.
UpdateHook = Callable[[int, Actor], None]
# discount(): the discount of the coming iteration (asked once before each rollout), for a schedule that
# changes it during training (e.g. clonekit.rl.ads); without one every iteration uses config.gamma.
DiscountSchedule = Callable[[], float]
# Checkpoint tensors of a reward model are stored in the checkpoint's model file under this prefix.
REWARD_MODEL_PREFIX = "reward_model."


@dataclass(frozen=True)
class Rollout:
    """One rollout as a reward model sees it (``T = num_steps``, ``N = num_envs``).

    ``obs`` ``(T, N, *obs_shape)``; ``actions`` ``(T, N)`` int64 or ``(T, N, A)`` in the actor's [-1, 1] units
    (unclipped draws); ``log_prob`` ``(T, N)`` of the actions under the policy that drew them; ``next_obs``
    ``(T, N, *obs_shape)`` the observation each step led to (an ended episode's own last one, not the next
    episode's first); ``terminated`` ``(T, N)`` bool (a real end, not a time limit); ``ended`` ``(T, N)`` bool
    (the episode ended at this step, by either end or a time limit).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    log_prob: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    ended: torch.Tensor | None = None


class RewardModel(Protocol):
    """A learned reward that replaces the env's in PPO (``train_ppo(..., reward_model=...)``)."""

    def rewards(self, rollout: Rollout, agent: ActorCritic) -> tuple[torch.Tensor, dict[str, float]]:
        """Rewards ``(T, N)`` for ``rollout`` and scalars to log; may first train the model on the rollout.
        Must draw its randomness from its own generator (PPO's and torch's global one stay untouched)."""
        ...

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to resume the model exactly: tensors and a JSON-able rest."""
        ...

    def load_state(self, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""
        ...


def env_reset_seed(seed: int, env_steps: int) -> int:
    """The reset seed of the envs at ``env_steps`` (the start, and every checkpoint); env ``i`` gets it ``+ i``."""
    return derive_seed(seed, f"ppo-envs:{env_steps}") % 2**31


def train_ppo(
    config: PPOConfig,
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    env_factories: list[EnvFactory] | None = None,
    env_block: dict[str, Any] | None = None,
    on_update: UpdateHook | None = None,
    init_actor: Callable[[Actor], None] | None = None,
    make_envs: Callable[[], VectorEnv] | None = None,
    reward_model: RewardModel | None = None,
    discount: DiscountSchedule | None = None,
) -> Actor:
    """Train PPO as ``config`` says into run directory ``out``; return the trained actor (a clonekit policy).

    ``init_actor`` changes the freshly initialized actor in place before training (e.g. a residual policy zeroes
    its last layer, :mod:`clonekit.rl.residual`); a resumed run's checkpoint overwrites it anyway. ``make_envs``
    builds the vector env instead of ``env_factories`` (a :class:`VectorEnv` that steps its envs its own way, e.g.
    as one batch), with ``env_block`` as there. ``reward_model`` replaces the env's rewards by learned ones (see
    :class:`RewardModel`); a resumed run restores its checkpointed state. ``discount()``, when given, is the
    discount of each iteration instead of ``config.gamma`` (GAE and the time-limit bootstrap); its owner keeps
    whatever state it needs (e.g. inside the reward model, which is checkpointed).

    ``env_factories`` (one per env, ``config.num_envs`` of them) replaces the envs ``config.env`` names, with
    ``env_block`` the env block the run records for evaluation (e.g. a ``maze`` block with its tasks); both
    must be given again to resume. With ``resume=True`` an existing run continues from its newest checkpoint
    (its recorded config must equal ``config``); without it an existing non-empty ``out`` is an error.
    """
    run_dir = Path(out)
    existing = run_dir.exists() and any(run_dir.iterdir())
    if existing and not resume:
        raise CheckpointError(f"{run_dir}: already exists; pass --resume to continue it, or choose another --out")
    if existing:
        recorded = load_run_config(run_dir)
        if recorded.get("algorithm") != ALGORITHM:
            raise CheckpointError(f"{run_dir / CONFIG_FILE}: not a PPO run (algorithm {recorded.get('algorithm')!r})")
        check_same_config(config, recorded.get("ppo_config"), str(run_dir / CONFIG_FILE))
    if make_envs is not None:
        block, envs = env_block or {"id": config.env, "kwargs": dict(config.env_kwargs), "tasks": []}, make_envs()
    else:
        if env_factories is None:
            env_factories, block = gym_env_factories(config.env, config.env_kwargs, config.num_envs)
            envs = VectorEnv.for_block(env_factories, block)
        else:
            if len(env_factories) != config.num_envs:
                raise ConfigError(
                    f"num_envs: expected {len(env_factories)} (one per env factory), got {config.num_envs}"
                )
            block = env_block or {"id": config.env, "kwargs": dict(config.env_kwargs), "tasks": []}
            envs = VectorEnv(env_factories)
    try:
        torch.manual_seed(config.seed)
        prior = DemoPrior(config, envs.observation_space, envs.action_space) if config.prior is not None else None
        if prior is not None and config.init_from_prior:
            actor = copy.deepcopy(prior.policy).requires_grad_(True)
        else:
            actor = new_actor(envs.observation_space, envs.action_space, config.encoder, config.hidden_sizes)
        if init_actor is not None:
            init_actor(actor)
        agent = ActorCritic(actor, config.hidden_sizes, config.init_log_std)
        # foreach: one call per Adam operation for all parameters instead of one per parameter; the same
        # arithmetic, so the same weights bit for bit, with a quarter less time per step on PPO's small networks.
        optimizer = torch.optim.Adam(agent.parameters(), lr=config.lr, eps=1e-5, foreach=True)
        generator = torch.Generator().manual_seed(derive_seed(config.seed, "ppo"))
        dataset = {"fingerprint": "", "env": block}
        run_config = rl_run_config(actor, ALGORITHM, config.seed, dataset, ppo_config=config_to_json(config))
        start = open_rl_run(run_dir, run_config, lambda last: _restore(last, agent, optimizer, generator, reward_model))
        if start >= config.num_iterations and (run_dir / MODEL_FILE).is_file():
            return load_policy(run_dir)  # type: ignore[return-value]
        _loop(
            config,
            run_dir,
            envs,
            agent,
            optimizer,
            generator,
            prior,
            start,
            show_progress,
            on_update,
            reward_model,
            discount,
        )
    finally:
        envs.close()
    atomic_save_tensors(dict(actor.state_dict()), run_dir / MODEL_FILE)
    actor.eval()
    return actor


def _loop(
    config: PPOConfig,
    run_dir: Path,
    envs: VectorEnv,
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    prior: DemoPrior | None,
    start: int,
    show_progress: bool,
    on_update: UpdateHook | None,
    reward_model: RewardModel | None = None,
    discount: DiscountSchedule | None = None,
) -> None:
    """Iterations ``start + 1 .. num_iterations``: rollout, GAE, update, log, checkpoint."""
    n, t_len, batch = config.num_envs, config.num_steps, config.batch_size
    obs_shape = tuple(envs.observation_space.shape)
    obs_dtype = torch.from_numpy(np.zeros(0, dtype=envs.observation_space.dtype)).dtype
    buf_obs = torch.zeros((t_len, n, *obs_shape), dtype=obs_dtype)
    action_shape = (agent.actor.action_dim,) if isinstance(agent.actor, ContinuousBCPolicy) else ()
    buf_actions = torch.zeros((t_len, n, *action_shape), dtype=torch.float32 if agent.continuous else torch.int64)
    buf_logp, buf_values, buf_rewards, buf_ended = (torch.zeros((t_len, n)) for _ in range(4))
    if reward_model is not None:  # what a learned reward needs besides: true next observations, real ends
        buf_next_obs = torch.zeros((t_len, n, *obs_shape), dtype=obs_dtype)
        buf_terminated = torch.zeros((t_len, n), dtype=torch.bool)
        buf_bootstrap = torch.zeros((t_len, n))
    env_steps = start * batch
    next_obs = envs.reset(env_reset_seed(config.seed, env_steps))
    episode_return, episode_length = np.zeros(n), np.zeros(n, dtype=np.int64)
    parameters = list(agent.parameters())
    scalars = ScalarLog(run_dir, env_steps, config.tensorboard)
    if start == 0 and on_update is not None:
        on_update(0, agent.actor)  # the first policy, before any update
    try:
        with progress_bar("ppo", total=config.num_iterations * batch, enabled=show_progress) as advance:
            advance(env_steps)
            for iteration in range(start + 1, config.num_iterations + 1):
                began = time.perf_counter()
                if config.anneal_lr:
                    optimizer.param_groups[0]["lr"] = config.lr * (1.0 - (iteration - 1) / config.num_iterations)
                finished: list[tuple[float, int]] = []
                gamma = config.gamma if discount is None else float(discount())
                agent.eval()
                with torch.no_grad():
                    for t in range(t_len):
                        obs = torch.from_numpy(next_obs)
                        actions, log_prob, value = agent.sample(obs, generator)
                        next_obs, reward, terminated, truncated, final = envs.step(agent.env_action(actions))
                        episode_return += reward
                        episode_length += 1
                        cut = [i for i in final if truncated[i] and not terminated[i]]
                        bootstrap: np.ndarray = np.zeros(0, dtype=np.float32)
                        if cut:  # time limit, not a real end: bootstrap from where the episode stood
                            last = torch.from_numpy(np.stack([final[i] for i in cut]))
                            bootstrap = gamma * agent.value(last).numpy()
                            reward[cut] += bootstrap
                        if reward_model is not None:
                            buf_bootstrap[t] = 0.0
                            buf_bootstrap[t, cut] = torch.from_numpy(bootstrap)
                            buf_next_obs[t] = torch.from_numpy(next_obs)
                            for slot, last_obs in final.items():
                                buf_next_obs[t, slot] = torch.from_numpy(last_obs)
                            buf_terminated[t] = torch.from_numpy(terminated)
                        ended = terminated | truncated
                        for i in np.flatnonzero(ended):
                            finished.append((float(episode_return[i]), int(episode_length[i])))
                        episode_return[ended], episode_length[ended] = 0.0, 0
                        buf_obs[t], buf_actions[t], buf_logp[t], buf_values[t] = obs, actions, log_prob, value
                        buf_rewards[t] = torch.from_numpy(reward)
                        buf_ended[t] = torch.from_numpy(ended.astype(np.float32))
                    reward_info: dict[str, float] = {}
                    if reward_model is not None:
                        learned, reward_info = reward_model.rewards(
                            Rollout(buf_obs, buf_actions, buf_logp, buf_next_obs, buf_terminated, buf_ended > 0),
                            agent,
                        )
                        # A truncated episode's bootstrap stays on top of the learned reward, as on the env's.
                        buf_rewards.copy_(learned + buf_bootstrap)
                    advantages = _gae(
                        buf_rewards, buf_values, buf_ended, agent.value(torch.from_numpy(next_obs)), config, gamma
                    )
                env_steps += batch
                rollout_s = time.perf_counter() - began
                info = _update(
                    config,
                    agent,
                    optimizer,
                    generator,
                    prior,
                    parameters,
                    env_steps - batch,
                    {
                        "obs": buf_obs.reshape(batch, *obs_shape),
                        "actions": buf_actions.reshape(batch, *action_shape),
                        "log_prob": buf_logp.reshape(batch),
                        "values": buf_values.reshape(batch),
                        "advantages": advantages.reshape(batch),
                    },
                )
                if finished:
                    info["episode_return"] = float(np.mean([r for r, _ in finished]))
                    info["episode_length"] = float(np.mean([length for _, length in finished]))
                    info["episodes"] = float(len(finished))
                info.update(reward_info)
                info["env_steps_per_s"] = batch / max(rollout_s, 1e-9)
                info["lr"] = float(optimizer.param_groups[0]["lr"])
                if discount is not None:
                    info["gamma"] = gamma
                scalars.log(env_steps, info)
                advance(batch, **{k: info[k] for k in ("episode_return",) if k in info})
                if on_update is not None:
                    on_update(env_steps, agent.actor)
                if env_steps // config.checkpoint_every > (env_steps - batch) // config.checkpoint_every or (
                    iteration == config.num_iterations
                ):
                    _checkpoint(
                        run_dir,
                        iteration,
                        env_steps,
                        agent,
                        optimizer,
                        generator,
                        config.keep_checkpoints,
                        reward_model,
                    )
                    # The envs start afresh here, as they do in a run resumed from this checkpoint.
                    next_obs = envs.reset(env_reset_seed(config.seed, env_steps))
                    episode_return[:], episode_length[:] = 0.0, 0
    finally:
        scalars.close()


def _gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    ended: torch.Tensor,
    next_value: torch.Tensor,
    config: PPOConfig,
    gamma: float,
) -> torch.Tensor:
    """GAE advantages ``(T, N)`` with discount ``gamma``: ``ended[t]`` marks an episode that ended at step ``t``
    (no bootstrap past it; a truncated one's reward already holds its bootstrap), ``next_value`` is ``V`` after
    the last step."""
    # Everything but the backward recursion is computed for all steps at once: the same elementwise operations
    # in the same order as step by step, so the same values bit for bit.
    live = 1.0 - ended
    following = torch.cat([values[1:], next_value[None]])
    deltas = rewards + gamma * following * live - values
    decays = gamma * config.gae_lambda * live
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        last = deltas[t] + decays[t] * last
        advantages[t] = last
    return advantages


def _update(
    config: PPOConfig,
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    prior: DemoPrior | None,
    parameters: list[torch.nn.Parameter],
    env_steps: int,
    data: dict[str, torch.Tensor],
) -> dict[str, float]:
    """``update_epochs`` passes of minibatch updates on one rollout; returns the scalars to log."""
    returns = data["advantages"] + data["values"]
    prior_targets = prior.targets(data["obs"]) if prior is not None else None
    prior_weight = prior.weight(env_steps) if prior is not None else 0.0
    size = config.batch_size // config.num_minibatches
    agent.train()
    # Scalars stay 0-d tensors until the update ends (one conversion instead of one per minibatch and scalar).
    stats: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "prior_loss")
    }
    for _ in range(config.update_epochs):
        order = torch.randperm(config.batch_size, generator=generator)
        # The per-step columns in this epoch's order, cut into minibatches by slicing: the same rows as indexing
        # each minibatch, in fewer operations. Observations (possibly images) are gathered per minibatch.
        epoch = {k: data[k][order] for k in ("actions", "log_prob", "values", "advantages")}
        epoch_returns = returns[order]
        for first in range(0, config.batch_size, size):
            mb = order[first : first + size]
            rows = slice(first, first + size)
            obs = data["obs"][mb]
            params = agent.distribution(obs)
            log_prob, entropy = agent.log_prob_entropy(params, epoch["actions"][rows])
            value = agent.value(obs)
            log_ratio = log_prob - epoch["log_prob"][rows]
            ratio = log_ratio.exp()
            with torch.no_grad():
                ratio_minus_1 = ratio - 1
                stats["approx_kl"].append((ratio_minus_1 - log_ratio).mean())
                stats["clip_fraction"].append((ratio_minus_1.abs() > config.clip_coef).float().mean())
            advantages = epoch["advantages"][rows]
            if config.norm_adv and size > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            negative_advantages = -advantages
            policy_loss = torch.max(
                negative_advantages * ratio,
                negative_advantages * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef),
            ).mean()
            mb_returns = epoch_returns[rows]
            if config.clip_vloss:
                old = epoch["values"][rows]
                clipped = old + (value - old).clamp(-config.clip_coef, config.clip_coef)
                value_loss = 0.5 * torch.max((value - mb_returns).square(), (clipped - mb_returns).square()).mean()
            else:
                value_loss = 0.5 * (value - mb_returns).square().mean()
            mean_entropy = entropy.mean()
            loss = policy_loss - config.ent_coef * mean_entropy + config.vf_coef * value_loss
            if prior is not None and prior_targets is not None:
                prior_loss = prior.loss(agent, params, prior_targets[mb])
                loss = loss + prior_weight * prior_loss
                stats["prior_loss"].append(prior_loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm(parameters, config.max_grad_norm)
            optimizer.step()
            stats["policy_loss"].append(policy_loss.detach())
            stats["value_loss"].append(value_loss.detach())
            stats["entropy"].append(mean_entropy.detach())
        if config.target_kl is not None and float(stats["approx_kl"][-1]) > config.target_kl:
            break
    variance = float(returns.var())
    info = {key: float(np.mean(torch.stack(values).tolist())) for key, values in stats.items() if values}
    info["explained_variance"] = (
        float("nan") if variance == 0 else 1.0 - float((returns - data["values"]).var()) / variance
    )
    if prior is not None:
        info["prior_weight"] = prior_weight
    if not all(math.isfinite(v) for k, v in info.items() if k != "explained_variance"):
        raise ConfigError(f"PPO diverged after {env_steps} env steps: {info}; lower lr")
    return info


def _checkpoint(
    run_dir: Path,
    iteration: int,
    env_steps: int,
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    keep: int,
    reward_model: RewardModel | None = None,
) -> None:
    tensors, rest = optimizer_to_tensors(optimizer.state_dict())
    trainer: dict[str, Any] = {
        "iteration": iteration,
        "env_steps": env_steps,
        "optimizer": rest,
        "rng": {"torch": torch.get_rng_state().tolist(), "generator": generator.get_state().tolist()},
    }
    model = dict(agent.state_dict())
    if reward_model is not None:
        reward_tensors, trainer["reward_model"] = reward_model.state()
        model.update({REWARD_MODEL_PREFIX + k: v for k, v in reward_tensors.items()})
    write_checkpoint(run_dir, env_steps, model, tensors, trainer, keep)


def _restore(
    directory: Path,
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    reward_model: RewardModel | None = None,
) -> int:
    """Load checkpoint ``directory`` into the agent, optimizer, generator (and reward model); returns its
    iteration."""
    tensors = load_tensors(directory / MODEL_FILE)
    reward_tensors = {
        k.removeprefix(REWARD_MODEL_PREFIX): v for k, v in tensors.items() if k.startswith(REWARD_MODEL_PREFIX)
    }
    agent_tensors = {k: v for k, v in tensors.items() if not k.startswith(REWARD_MODEL_PREFIX)}
    load_state_into(agent, agent_tensors, directory / MODEL_FILE)
    trainer = read_json(directory / TRAINER_FILE, "trainer state")
    if reward_model is not None:
        if "reward_model" not in trainer:
            raise CheckpointError(f"{directory / TRAINER_FILE}: expected a reward model's state, found none")
        reward_model.load_state(reward_tensors, trainer["reward_model"])
    try:
        optimizer.load_state_dict(
            optimizer_from_tensors(load_tensors(directory / OPTIMIZER_FILE), trainer["optimizer"])
        )
        torch.set_rng_state(torch.tensor(trainer["rng"]["torch"], dtype=torch.uint8))
        generator.set_state(torch.tensor(trainer["rng"]["generator"], dtype=torch.uint8))
        iteration = int(trainer["iteration"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{directory / TRAINER_FILE}: expected a PPO trainer state, found a bad one ({err})"
        ) from err
    return iteration

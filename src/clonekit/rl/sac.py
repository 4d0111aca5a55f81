"""Soft actor-critic (SAC) on vectorized gymnasium envs with Box actions, under clonekit's run format.

Reads top to bottom as CleanRL's ``sac_continuous_action.py`` does, with Stable-Baselines3's update order and
defaults: each vector step acts (uniformly at random for the first ``learning_starts`` env steps), stores the
transitions in a numpy replay buffer, then takes ``num_envs * updates_per_step`` gradient steps, each:

1. the temperature: ``alpha`` moves to make the policy's entropy ``-log pi(a|s)`` approach ``target_entropy``;
2. the critics: both ``Q`` regress on ``r + gamma * (1 - terminated) * (min Q_target(s', a') - alpha log pi(a'|s'))``
   with ``a' ~ pi(.|s')``;
3. the actor: minimizes ``alpha log pi(a|s) - min Q(s, a)`` with ``a ~ pi(.|s)`` reparameterized (with
   ``config.prior``, plus ``w(t) * |tanh(mean(s)) - a_BC(s)|^2``, a pull towards a frozen BC policy's action in
   [-1, 1] units, ``w(t)`` as in :mod:`clonekit.rl.prior`: demonstration-regularized SAC);
4. the target critics move towards the online ones by ``tau``.

The actor is a squashed Gaussian: ``a = tanh(u)``, ``u ~ N(mean(s), std(s)^2)``, in [-1, 1] units scaled to the
env's action bounds. A *truncated* episode (time limit) is not an end: its transition keeps the true last
observation as ``s'`` and bootstraps from it (``terminated`` is what stops the bootstrap), as SB3 does.

The run saves its actor as a ``td3bc`` policy, so ``load_policy(RUN)``, ``clonekit eval RUN`` and ONNX export use
it unchanged: that policy acts with ``tanh(MLP(obs))`` scaled to its action range, which is SAC's deterministic
action (the tanh of the Gaussian's mean) when the MLP is SAC's mean network, and it holds a
:class:`clonekit.nn.critics.TwinQ`, which is SAC's pair of critics. Beside it, the agent here keeps what only
training needs: the log standard deviation layer (on the mean network's last hidden features) and ``log alpha``.

The run directory is clonekit's (:mod:`clonekit.checkpoint`): ``config.json``, ``model.safetensors`` (the
actor), ``metrics.jsonl`` (one line per ``log_every`` env steps) and ``checkpoints/step_*``: the whole agent,
the three Adam states and the replay buffer's filled part (in ``optimizer.safetensors``, keys ``replay.*``), and
``trainer.json`` (env steps, buffer position, RNG states). Exact resume: a run continued from a checkpoint ends
with the same weights as one never interrupted (same torch build and thread count); at every checkpoint the
envs are reset with seeds derived from ``config.seed`` and the step count, in the uninterrupted run as in the
resumed one (an episode running there ends without a terminal flag, so nothing false is learned).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
from clonekit.policies.td3bc import TD3BCConfig, TD3BCPolicy
from clonekit.progress import progress_bar
from clonekit.rl.prior import DemoPrior
from clonekit.rl.run import open_rl_run, rl_run_config
from clonekit.rl.sac_config import SACConfig
from clonekit.rl.vector import EnvFactory, VectorEnv, gym_env_factories
from clonekit.seeding import derive_seed
from clonekit.train import ScalarLog

ALGORITHM = "sac"
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's bounds
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# on_step(env_steps, actor): called after every vector step (and with 0 before the first one of a fresh run).
StepHook = Callable[[int, TD3BCPolicy], None]


def env_reset_seed(seed: int, env_steps: int) -> int:
    """The reset seed of the envs at ``env_steps`` (the start, and every checkpoint); env ``i`` gets it ``+ i``."""
    return derive_seed(seed, f"sac-envs:{env_steps}") % 2**31


class SACAgent(nn.Module):
    """The actor (a ``td3bc`` policy whose ``actor`` MLP gives the Gaussian's mean and whose ``critic`` is the
    twin Q), the log standard deviation layer and ``log_alpha``. Actions here are in [-1, 1] units ``(B, A)``."""

    def __init__(self, policy: TD3BCPolicy, hidden_sizes: tuple[int, ...], alpha: float) -> None:
        super().__init__()
        self.policy = policy
        self.log_std = nn.Linear(hidden_sizes[-1], policy.action_dim)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    def actor_parameters(self) -> list[nn.Parameter]:
        """The parameters the actor's loss trains: the mean network and the log standard deviation layer."""
        return [*self.policy.actor.parameters(), *self.log_std.parameters()]

    def sample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Draw ``a = tanh(u)`` for observations ``(B, *obs_shape)`` (noise from ``generator``): actions ``(B, A)``,
        their log-probabilities ``(B,)`` (the Gaussian's, corrected for the tanh) and the deterministic actions
        ``tanh(mean)`` ``(B, A)``."""
        hidden = self.policy.features(obs)
        for layer in list(self.policy.actor)[:-1]:  # the mean network's hidden layers, shared by both heads
            hidden = layer(hidden)
        mean = self.policy.actor[-1](hidden)
        log_std = self.log_std(hidden).clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn(mean.shape, generator=generator)
        u = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.square() - log_std - HALF_LOG_2PI).sum(-1)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob, torch.tanh(mean)


class ReplayBuffer:
    """A ring of the last ``capacity`` transitions in numpy arrays: ``obs``, ``next_obs`` ``(capacity, *obs_shape)``,
    ``actions`` ``(capacity, A)`` in [-1, 1] units, ``rewards`` and ``terminated`` ``(capacity,)``."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype, action_dim: int) -> None:
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.arrays = {
            "obs": np.zeros((capacity, *obs_shape), obs_dtype),
            "next_obs": np.zeros((capacity, *obs_shape), obs_dtype),
            "actions": np.zeros((capacity, action_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "terminated": np.zeros(capacity, np.float32),
        }

    def add(self, **batch: np.ndarray) -> None:
        """Store a batch of transitions (each field ``(N, ...)``), overwriting the oldest when full."""
        n = len(batch["obs"])
        rows = (self.pos + np.arange(n)) % self.capacity
        for name in self.FIELDS:
            self.arrays[name][rows] = batch[name]
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement (indices from ``generator``)."""
        rows = torch.randint(self.size, (batch_size,), generator=generator).numpy()
        return {name: torch.from_numpy(array[rows]) for name, array in self.arrays.items()}

    def to_tensors(self) -> dict[str, Tensor]:
        """The filled part, as tensors ``replay.FIELD`` (for a checkpoint)."""
        return {
            f"replay.{name}": torch.from_numpy(np.ascontiguousarray(a[: self.size])) for name, a in self.arrays.items()
        }

    def load(self, tensors: dict[str, Tensor], pos: int, where: Path) -> None:
        """Refill from :meth:`to_tensors`' output, with the write position ``pos``."""
        try:
            size = len(tensors["replay.obs"])
            for name in self.FIELDS:
                self.arrays[name][:size] = tensors[f"replay.{name}"].numpy()
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{where}: expected the replay buffer of this run, found a bad one ({err})") from err
        if not (0 <= pos < self.capacity and size <= self.capacity):
            raise CheckpointError(f"{where}: replay position: expected in [0, {self.capacity}), found {pos}")
        self.pos, self.size = pos, size


def train_sac(
    config: SACConfig,
    out: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    env_factories: list[EnvFactory] | None = None,
    env_block: dict[str, Any] | None = None,
    on_step: StepHook | None = None,
) -> TD3BCPolicy:
    """Train SAC as ``config`` says into run directory ``out``; return the trained actor (a ``td3bc`` policy).

    ``env_factories`` (one per env, ``config.num_envs`` of them) replaces the envs ``config.env`` names, with
    ``env_block`` the env block the run records for evaluation; both must be given again to resume. With
    ``resume=True`` an existing run continues from its newest checkpoint (its recorded config must equal
    ``config``); without it an existing non-empty ``out`` is an error.
    """
    run_dir = Path(out)
    existing = run_dir.exists() and any(run_dir.iterdir())
    if existing and not resume:
        raise CheckpointError(f"{run_dir}: already exists; pass --resume to continue it, or choose another --out")
    if existing:
        recorded = load_run_config(run_dir)
        if recorded.get("algorithm") != ALGORITHM:
            raise CheckpointError(f"{run_dir / CONFIG_FILE}: not a SAC run (algorithm {recorded.get('algorithm')!r})")
        check_same_config(config, recorded.get("sac_config"), str(run_dir / CONFIG_FILE))
    if env_factories is None:
        env_factories, block = gym_env_factories(config.env, config.env_kwargs, config.num_envs)
        envs = VectorEnv.for_block(env_factories, block)
    else:
        if len(env_factories) != config.num_envs:
            raise ConfigError(f"num_envs: expected {len(env_factories)} (one per env factory), got {config.num_envs}")
        block = env_block or {"id": config.env, "kwargs": dict(config.env_kwargs), "tasks": []}
        envs = VectorEnv(env_factories)
    try:
        space = envs.action_space
        if not isinstance(space, gymnasium.spaces.Box):
            raise ConfigError(f"env: action space: SAC needs a Box (continuous actions), found {space}")
        low, high = np.asarray(space.low, np.float64).ravel(), np.asarray(space.high, np.float64).ravel()
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError(f"env: action space: SAC needs finite Box bounds, found {space}")
        torch.manual_seed(config.seed)
        obs_shape = tuple(int(d) for d in envs.observation_space.shape)
        policy = TD3BCPolicy(
            TD3BCConfig(
                obs_shape,
                (len(low),),
                hidden_sizes=config.hidden_sizes,
                normalize_obs="none",
                gamma=config.gamma,
                polyak=config.tau,
            )
        )
        policy.action_low.copy_(torch.from_numpy(low))
        policy.action_high.copy_(torch.from_numpy(high))
        agent = SACAgent(policy, config.hidden_sizes, config.alpha)
        optimizers: dict[str, torch.optim.Optimizer] = {
            "actor": torch.optim.Adam(agent.actor_parameters(), lr=config.lr),
            "critic": torch.optim.Adam(policy.critic.q.parameters(), lr=config.lr),
            "alpha": torch.optim.Adam([agent.log_alpha], lr=config.lr),
        }
        prior = DemoPrior(config, envs.observation_space, space) if config.prior is not None else None
        buffer = ReplayBuffer(config.buffer_size, obs_shape, envs.observation_space.dtype, len(low))
        generator = torch.Generator().manual_seed(derive_seed(config.seed, "sac"))
        dataset = {"fingerprint": "", "env": block}
        run_config = rl_run_config(policy, ALGORITHM, config.seed, dataset, sac_config=config_to_json(config))
        start = open_rl_run(run_dir, run_config, lambda last: _restore(last, agent, optimizers, buffer, generator))
        if start >= config.num_iterations and (run_dir / MODEL_FILE).is_file():
            return load_policy(run_dir)  # type: ignore[return-value]
        _loop(config, run_dir, envs, agent, optimizers, buffer, generator, prior, start, show_progress, on_step)
    finally:
        envs.close()
    atomic_save_tensors(dict(policy.state_dict()), run_dir / MODEL_FILE)
    policy.eval()
    return policy


def _loop(
    config: SACConfig,
    run_dir: Path,
    envs: VectorEnv,
    agent: SACAgent,
    optimizers: dict[str, torch.optim.Optimizer],
    buffer: ReplayBuffer,
    generator: torch.Generator,
    prior: DemoPrior | None,
    start: int,
    show_progress: bool,
    on_step: StepHook | None,
) -> None:
    """Vector steps ``start + 1 .. num_iterations``: act, store, update, log, checkpoint."""
    n, policy = config.num_envs, agent.policy
    target_entropy = -float(policy.action_dim) if config.target_entropy is None else config.target_entropy
    env_steps = start * n
    obs = envs.reset(env_reset_seed(config.seed, env_steps))
    episode_return, episode_length = np.zeros(n), np.zeros(n, dtype=np.int64)
    finished: list[tuple[float, int]] = []
    stats: dict[str, list[float]] = {}
    scalars = ScalarLog(run_dir, env_steps, config.tensorboard)
    began = time.perf_counter()
    if start == 0 and on_step is not None:
        on_step(0, policy)
    try:
        with progress_bar("sac", total=config.num_iterations * n, enabled=show_progress) as advance:
            advance(env_steps)
            for iteration in range(start + 1, config.num_iterations + 1):
                with torch.no_grad():
                    if env_steps < config.learning_starts:
                        actions = torch.rand((n, policy.action_dim), generator=generator) * 2 - 1
                    else:
                        actions, _, _ = agent.sample(torch.from_numpy(obs), generator)
                next_obs, reward, terminated, truncated, final = envs.step(
                    policy.unnormalize_action(actions).numpy().astype(np.float32)
                )
                real_next = next_obs.copy()
                for i, last in final.items():  # an ended episode's true last observation, not the next one's first
                    real_next[i] = last
                buffer.add(
                    obs=obs,
                    next_obs=real_next,
                    actions=actions.numpy(),
                    rewards=reward,
                    terminated=terminated.astype(np.float32),
                )
                obs = next_obs
                episode_return += reward
                episode_length += 1
                ended = terminated | truncated
                for k in np.flatnonzero(ended):
                    finished.append((float(episode_return[k]), int(episode_length[k])))
                episode_return[ended], episode_length[ended] = 0.0, 0
                env_steps += n
                if env_steps > config.learning_starts:
                    for _ in range(n * config.updates_per_step):
                        info = _update(config, agent, optimizers, buffer, generator, target_entropy, prior, env_steps)
                        for key, value in info.items():
                            stats.setdefault(key, []).append(value)
                advance(n)
                if env_steps // config.log_every > (env_steps - n) // config.log_every:
                    info = {key: float(np.mean(values)) for key, values in stats.items()}
                    if finished:
                        info["episode_return"] = float(np.mean([r for r, _ in finished]))
                        info["episode_length"] = float(np.mean([length for _, length in finished]))
                        info["episodes"] = float(len(finished))
                    now = time.perf_counter()
                    info["env_steps_per_s"] = config.log_every / max(now - began, 1e-9)
                    began = now
                    scalars.log(env_steps, info)
                    stats, finished = {}, []
                if on_step is not None:
                    on_step(env_steps, policy)
                if env_steps // config.checkpoint_every > (env_steps - n) // config.checkpoint_every or (
                    iteration == config.num_iterations
                ):
                    _checkpoint(run_dir, iteration, env_steps, agent, optimizers, buffer, generator, config)
                    # The envs start afresh here, as they do in a run resumed from this checkpoint; so do the
                    # interval's statistics (a resumed run has not seen the ones before it).
                    obs = envs.reset(env_reset_seed(config.seed, env_steps))
                    episode_return[:], episode_length[:] = 0.0, 0
                    stats, finished = {}, []
    finally:
        scalars.close()


def _update(
    config: SACConfig,
    agent: SACAgent,
    optimizers: dict[str, torch.optim.Optimizer],
    buffer: ReplayBuffer,
    generator: torch.Generator,
    target_entropy: float,
    prior: DemoPrior | None,
    env_steps: int,
) -> dict[str, float]:
    """One gradient step on a minibatch (temperature, critics, actor, targets); returns the scalars to log."""
    batch = buffer.sample(config.batch_size, generator)
    policy = agent.policy
    x, x_next = policy.features(batch["obs"]), policy.features(batch["next_obs"])
    actions_pi, log_prob, deterministic = agent.sample(batch["obs"], generator)

    alpha_loss = torch.zeros(())
    if config.autotune:
        alpha_loss = -(agent.log_alpha * (log_prob.detach() + target_entropy)).mean()
        optimizers["alpha"].zero_grad(set_to_none=True)
        alpha_loss.backward()
        optimizers["alpha"].step()
    alpha = agent.log_alpha.detach().exp()

    with torch.no_grad():
        next_actions, next_log_prob, _ = agent.sample(batch["next_obs"], generator)
        next_q = policy.critic.target(x_next, next_actions) - alpha * next_log_prob
        target = batch["rewards"] + config.gamma * (1 - batch["terminated"]) * next_q
    first, second = policy.critic.online(x, batch["actions"])
    critic_loss = 0.5 * (F.mse_loss(first, target) + F.mse_loss(second, target))
    optimizers["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    optimizers["critic"].step()

    policy.critic.q.requires_grad_(False)  # the actor's loss reaches the actor only
    q_pi = torch.minimum(*policy.critic.online(x, actions_pi))
    policy.critic.q.requires_grad_(True)
    actor_loss = (alpha * log_prob - q_pi).mean()
    prior_info: dict[str, float] = {}
    if prior is not None:
        prior_action = policy.normalize_action(prior.targets(batch["obs"])).clamp(-1, 1)
        prior_loss = (deterministic - prior_action).square().sum(-1).mean()
        weight = prior.weight(env_steps)
        actor_loss = actor_loss + weight * prior_loss
        prior_info = {"prior_loss": float(prior_loss.detach()), "prior_weight": weight}
    optimizers["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    optimizers["actor"].step()

    policy.critic.update_target(config.tau)
    info = {
        "critic_loss": float(critic_loss.detach()),
        "actor_loss": float(actor_loss.detach()),
        "alpha": float(alpha),
        "alpha_loss": float(alpha_loss.detach()),
        "entropy": float(-log_prob.detach().mean()),
        "q_mean": float(first.detach().mean()),
        **prior_info,
    }
    if not math.isfinite(info["critic_loss"] + info["actor_loss"]):
        raise ConfigError(f"SAC diverged: {info}; lower lr")
    return info


def _checkpoint(
    run_dir: Path,
    iteration: int,
    env_steps: int,
    agent: SACAgent,
    optimizers: dict[str, torch.optim.Optimizer],
    buffer: ReplayBuffer,
    generator: torch.Generator,
    config: SACConfig,
) -> None:
    tensors, rests = buffer.to_tensors(), {}
    for name, optimizer in optimizers.items():
        state, rests[name] = optimizer_to_tensors(optimizer.state_dict())
        tensors |= {f"{name}.{key}": value for key, value in state.items()}
    trainer = {
        "iteration": iteration,
        "env_steps": env_steps,
        "replay_pos": buffer.pos,
        "optimizers": rests,
        "rng": {"torch": torch.get_rng_state().tolist(), "generator": generator.get_state().tolist()},
    }
    write_checkpoint(run_dir, env_steps, dict(agent.state_dict()), tensors, trainer, config.keep_checkpoints)


def _restore(
    directory: Path,
    agent: SACAgent,
    optimizers: dict[str, torch.optim.Optimizer],
    buffer: ReplayBuffer,
    generator: torch.Generator,
) -> int:
    """Load checkpoint ``directory`` into the agent, optimizers, buffer and generator; returns its iteration."""
    load_state_into(agent, load_tensors(directory / MODEL_FILE), directory / MODEL_FILE)
    trainer = read_json(directory / TRAINER_FILE, "trainer state")
    tensors = load_tensors(directory / OPTIMIZER_FILE)
    try:
        for name, optimizer in optimizers.items():
            own = {key.removeprefix(f"{name}."): v for key, v in tensors.items() if key.startswith(f"{name}.")}
            optimizer.load_state_dict(optimizer_from_tensors(own, trainer["optimizers"][name]))
        buffer.load(tensors, int(trainer["replay_pos"]), directory / OPTIMIZER_FILE)
        torch.set_rng_state(torch.tensor(trainer["rng"]["torch"], dtype=torch.uint8))
        generator.set_state(torch.tensor(trainer["rng"]["generator"], dtype=torch.uint8))
        iteration = int(trainer["iteration"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{directory / TRAINER_FILE}: expected a SAC trainer state, found a bad one ({err})"
        ) from err
    return iteration

"""Interactive imitation runs: DAgger, HG-DAgger, Sirius and RLIF, round by round, resumable after a kill.

A run starts from a demonstration dataset and repeats, for round ``i = 0 .. R - 1``: train the policy on
everything gathered so far (``RUN/policies/round_i``; round 0 is behaviour cloning on the demonstrations),
play ``episodes_per_round`` episodes with it under the method's intervener (:mod:`.episodes`), and append
them to the run's dataset. After the last round the final policy is trained (``RUN/policies/round_R``).

Methods (``METHODS``), all on the same dataset layout:

* ``dagger`` (Ross et al., 2011): mixing with ``beta_i = beta * beta_decay ** i``; trains on every step
  with the expert's labels (``action_labels="expert_action"``).
* ``hg_dagger`` (Kelly et al., 2019): gated; trains on the demonstrations and the intervention steps only
  (the ``weight`` stream is 1 there and 0 on the policy's own steps).
* ``sirius`` (Liu et al., 2023): gated; weighted behaviour cloning on all steps, weighted by segment class
  (:mod:`.segments`; ``weight_*`` settings).
* ``rlif`` (Luo et al., 2024): gated; reward -1 on the step that made the intervener step in, 0 elsewhere,
  and an IQL critic fitted on all data after every round; the ``weight`` stream then holds every step's
  advantage weight ``exp(temperature * (Q - V))`` (:mod:`.rlif`; ``rlif_*`` settings), and the policy is
  trained by weighted behaviour cloning on all steps (IQL's policy extraction).

A :class:`RoundPlayer` may play the rounds instead of the simulated intervener: a person on the live page
(:mod:`.human`, ``--intervener human``) plays each round's episodes, and the steps they took over are the
round's intervention steps; everything else is the same. ``run.json`` then records ``"intervener"`` (absent for
simulated runs), and the run continues only with the same kind of intervener.

The run's dataset (``RUN/<dataset>``, named in ``RUN/run.json``) holds the demonstrations' ``obs``,
``action``, ``reward``, ``terminated``, ``truncated`` (other streams are not carried over) plus
``intervention``, ``expert_action`` (a demonstration's own action), ``round`` (-1 for the demonstrations)
and, for the gated methods, ``weight`` (float32 sampling weight). Appending a round writes a new dataset
directory atomically, then switches ``run.json`` to it (also atomic), then deletes the old one: a kill at
any point leaves the last acknowledged round readable, and a rerun of the same command continues at the
first round ``run.json`` does not list, replaying it exactly (every draw is seeded from the run's seed and
the round). ``expert_labels`` (states the expert labelled) is counted per round in ``run.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from clonekit.checkpoint import load_policy, read_json
from clonekit.config import check, check_same_config, config_to_json
from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.envs import get_env_family
from clonekit.errors import CheckpointError, ConfigError, unknown_name
from clonekit.evaluation import split_tasks
from clonekit.experts import make_expert
from clonekit.interactive.episodes import Episode, RoundPlay, play_round
from clonekit.interactive.expert_intervener import ExpertIntervener, ExpertIntervenerConfig
from clonekit.interactive.interveners import Intervener, IntervenerConfig, MazeIntervener, labels_left
from clonekit.interactive.rlif import CriticConfig, discrete_actions, rlif_weights
from clonekit.interactive.segments import SegmentWeights, segment_classes
from clonekit.io import acknowledge_dataset, atomic_write_json, remove_stale_datasets
from clonekit.policies import Policy
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, check_lr_schedule, train

RUN_FILE = "run.json"
RUN_FORMAT = "clonekit-interactive/2"  # /2: rounds play the tasks after the demonstrations' first
METHODS = ("dagger", "hg_dagger", "sirius", "rlif")


def _maze_intervener(config: InteractiveConfig, action_space: gym.spaces.Space[Any]) -> Intervener:
    return MazeIntervener(config.intervener_config())


def _expert_intervener(env: str, expert: str) -> Callable[[InteractiveConfig, gym.spaces.Space[Any]], Intervener]:
    """A maker of :class:`ExpertIntervener` over the registered expert ``expert`` of env ``env``."""

    def make(config: InteractiveConfig, action_space: gym.spaces.Space[Any]) -> Intervener:
        return ExpertIntervener(make_expert(env, expert), action_space, config.expert_intervener_config())

    return make


# Simulated interveners by env family, made from the run's settings and the env's action space: the one
# explicit registry. An env not listed (e.g. ``gym:Pendulum-v1``) gets an ExpertIntervener over the expert that
# recorded its demonstrations (see _simulated_intervener).
INTERVENERS: dict[str, Callable[[InteractiveConfig, gym.spaces.Space[Any]], Intervener]] = {
    "maze": _maze_intervener,
    "avoiding": _expert_intervener("avoiding", "paths"),
    "metaworld": _expert_intervener("metaworld", "scripted"),
}
# HG-DAgger learns from the demonstrations and the intervention steps only.
HG_DAGGER_WEIGHTS = SegmentWeights(demo=1.0, autonomous=0.0, intervention=1.0, pre_intervention=0.0, pre_window=0)


@dataclass(frozen=True)
class RoundToPlay:
    """One round's episodes, as a :class:`RoundPlayer` is asked to play them.

    Episode ``k`` of ``episode_ids`` plays ``tasks[k % len(tasks)]``; ``seed`` is the round's; ``max_steps``
    cuts an episode (truncated); ``labels_left`` is what the run's label budget still allows (None: no limit).
    """

    index: int
    policy: Policy
    family: Any
    tasks: list[Any]
    episode_ids: np.ndarray
    seed: int
    env_kwargs: dict[str, Any]
    max_steps: int | None
    labels_left: int | None


class RoundPlayer(Protocol):
    """Plays the rounds' episodes in place of the simulated intervener, gated: the policy acts and the player
    takes over (each step it controls is one label); ``name`` is recorded in ``run.json``."""

    name: str

    def play(self, round_to_play: RoundToPlay) -> RoundPlay:
        """The round's episodes with their task indices (streams as :func:`.episodes.play_round` returns)."""
        ...


def check_player_method(method: str) -> None:
    """``ConfigError`` for ``dagger`` with a :class:`RoundPlayer`: DAgger needs a label at every visited state,
    which taking over does not give."""
    if method == "dagger":
        raise ConfigError(
            "dagger: the expert labels every visited state, which an intervener who takes over does not give; "
            "use hg_dagger, sirius or rlif with this intervener"
        )


# hook(round, stage) is called at "trained", "collected" and "appended" of every round (tests kill runs there).
RoundHook = Callable[[int, str], None]


@dataclass(frozen=True)
class InteractiveConfig:
    """Settings of an interactive run (``--set KEY=VALUE`` on the command line).

    Args:
        policy: Policy trained every round, or ``"auto"``: ``bc`` for discrete actions, ``continuous_bc`` for
            continuous (Box) actions.
        policy_overrides: Settings of that policy (e.g. ``{"hidden_sizes": [128]}``).
        train_steps: Gradient steps per round; each round trains from scratch on all data so far.
        batch_size: Transitions per gradient step.
        lr: Adam learning rate.
        lr_schedule: Learning-rate schedule of every round's training (``"constant"`` or ``"cosine"``; see
            :class:`~clonekit.train.TrainConfig`).
        episodes_per_round: Episodes played per round (on the demonstrations' training tasks, in turn).
        max_episode_steps: Cut every interactive episode after this many steps (truncated); None: the env's own
            limit. A short horizon keeps a lost policy from spending labels on one maze.
        beta: DAgger: probability that the expert's action runs in round 0.
        beta_decay: DAgger: ``beta`` is multiplied by this every round.
        min_regret: Intervener rule: take over at a proposed action this many moves worse than the best (1, 2).
        stall_steps: Intervener rule: also take over after this many steps without progress; 0 off.
        threshold: Intervener rule of expert-backed interveners (continuous actions): take over when the
            proposed action is at least this far (L2, in action units) from the expert's.
        delay: Intervener reaction delay in steps.
        expert_noise: Probability that the expert's action or label is a uniformly drawn wrong one (discrete
            actions); for continuous actions the standard deviation of Gaussian noise on them (at most 1).
        label_budget: Expert labels the rounds may use in all (None: no limit); the demonstrations are extra.
        labels_per_round: Expert labels one round may use at most (None: no limit), e.g. ``label_budget /
            rounds`` to spread the budget over the rounds: without it a method spends labels as its rounds ask
            and may have spent all of them in the first rounds.
        weight_demo: Sirius weight of demonstration steps.
        weight_autonomous: Sirius weight of the policy's own steps.
        weight_intervention: Sirius weight of intervention steps.
        weight_pre_intervention: Sirius weight of the steps just before an intervention.
        pre_window: Sirius pre-intervention window, in steps.
        rlif_gamma: RLIF: discount of the intervention penalty.
        rlif_expectile: RLIF: expectile ``tau`` of ``V`` on ``Q`` of the data's actions (0.5 mean, towards 1 best).
        rlif_temperature: RLIF: inverse temperature of the advantage weights ``exp(t * (Q - V))``.
        rlif_max_weight: RLIF: advantage weights are clipped at this value, then normalized to mean 1.
        rlif_critic_steps: RLIF: gradient steps of the critic, refitted from scratch after every round.
        rlif_critic_batch_size: RLIF: transitions per critic step.
        rlif_critic_lr: RLIF: Adam learning rate of the critic.
        rlif_critic_hidden_sizes: RLIF: MLP widths of the critic's ``Q`` and ``V`` networks.
        rlif_polyak: RLIF: update rate of the target ``Q`` networks.
        The RLIF reward also reads ``delay`` (the reaction delay it assumes; see :func:`.rlif.rlif_rewards`).
    """

    policy: str = "auto"
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    train_steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    episodes_per_round: int = 32
    max_episode_steps: int | None = None
    beta: float = 0.5
    beta_decay: float = 0.5
    min_regret: int = 1
    stall_steps: int = 0
    threshold: float = 0.5
    delay: int = 0
    expert_noise: float = 0.0
    label_budget: int | None = None
    labels_per_round: int | None = None
    weight_demo: float = 1.0
    weight_autonomous: float = 1.0
    weight_intervention: float = 2.0
    weight_pre_intervention: float = 0.0
    pre_window: int = 4
    rlif_gamma: float = 0.9
    rlif_expectile: float = 0.8
    rlif_temperature: float = 3.0
    rlif_max_weight: float = 100.0
    rlif_critic_steps: int = 600
    rlif_critic_batch_size: int = 256
    rlif_critic_lr: float = 1e-3
    rlif_critic_hidden_sizes: tuple[int, ...] = (128, 128)
    rlif_polyak: float = 0.02

    def __post_init__(self) -> None:
        check(self.train_steps >= 1, "train_steps", ">= 1", self.train_steps)
        check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        check(self.lr > 0 and math.isfinite(self.lr), "lr", "a finite number > 0", self.lr)
        check_lr_schedule(self.lr_schedule)
        check(self.episodes_per_round >= 1, "episodes_per_round", ">= 1", self.episodes_per_round)
        steps = self.max_episode_steps
        check(steps is None or steps >= 1, "max_episode_steps", "null or >= 1", steps)
        check(0 <= self.beta <= 1, "beta", "in [0, 1]", self.beta)
        check(0 <= self.beta_decay <= 1, "beta_decay", "in [0, 1]", self.beta_decay)
        per_round = self.labels_per_round
        check(per_round is None or per_round >= 1, "labels_per_round", "null or >= 1", per_round)
        self.intervener_config()
        self.expert_intervener_config()
        self.segment_weights()
        self.critic_config()

    def intervener_config(self) -> IntervenerConfig:
        """The simulated intervener's quality."""
        return IntervenerConfig(
            min_regret=self.min_regret,
            stall_steps=self.stall_steps,
            delay=self.delay,
            expert_noise=self.expert_noise,
            label_budget=self.label_budget,
        )

    def expert_intervener_config(self) -> ExpertIntervenerConfig:
        """The quality of an expert-backed simulated intervener (envs other than the maze)."""
        return ExpertIntervenerConfig(
            threshold=self.threshold,
            delay=self.delay,
            expert_noise=self.expert_noise,
            label_budget=self.label_budget,
        )

    def critic_config(self) -> CriticConfig:
        """RLIF's critic and advantage weights."""
        return CriticConfig(
            gamma=self.rlif_gamma,
            expectile=self.rlif_expectile,
            temperature=self.rlif_temperature,
            max_weight=self.rlif_max_weight,
            steps=self.rlif_critic_steps,
            batch_size=self.rlif_critic_batch_size,
            lr=self.rlif_critic_lr,
            hidden_sizes=self.rlif_critic_hidden_sizes,
            polyak=self.rlif_polyak,
        )

    def segment_weights(self) -> SegmentWeights:
        """Sirius's class weights."""
        return SegmentWeights(
            demo=self.weight_demo,
            autonomous=self.weight_autonomous,
            intervention=self.weight_intervention,
            pre_intervention=self.weight_pre_intervention,
            pre_window=self.pre_window,
        )


@dataclass
class InteractiveRun:
    """A finished (or resumed-to-finish) run: its directory, dataset, final policy and per-round counts."""

    path: Path
    dataset: Dataset
    policy: Policy
    rounds: list[dict[str, Any]]

    def policy_dir(self, round_index: int) -> Path:
        """The training run of the policy that played round ``round_index`` (``len(rounds)``: the final one)."""
        return self.path / "policies" / f"round_{round_index}"

    @property
    def expert_labels(self) -> int:
        """Labels the expert gave in all rounds (the demonstrations not counted)."""
        return sum(r["expert_labels"] for r in self.rounds)


def check_method(method: str) -> None:
    """``UnknownNameError`` unless ``method`` is one of ``METHODS``."""
    if method not in METHODS:
        raise unknown_name("interactive method", method, METHODS)


def run_interactive(
    method: str,
    data: str | Path | Dataset,
    out: str | Path,
    rounds: int,
    seed: int = 0,
    config: InteractiveConfig | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    hook: RoundHook | None = None,
    player: RoundPlayer | None = None,
) -> InteractiveRun:
    """Run (or continue) ``method`` for ``rounds`` rounds from demonstrations ``data`` into ``out``.

    An existing ``out`` continues where it stopped when it was started with the same method, seed, settings,
    demonstrations and kind of intervener (``rounds`` may be raised); otherwise ``CheckpointError``. ``player``
    plays the rounds instead of the simulated intervener (not for ``dagger``). See the module docstring.
    """
    check_method(method)
    check(rounds >= 0, "rounds", ">= 0", rounds)
    config = config or InteractiveConfig()
    source = data if isinstance(data, Dataset) else Dataset.open(data)
    env_id = source.env.get("id")
    if player is not None:
        check_player_method(method)
        if not isinstance(env_id, str):
            raise ConfigError(f"{source.path}: meta.json env has no 'id'; the rounds need the env to play in")
    elif not isinstance(env_id, str) or (env_id not in INTERVENERS and not source.env.get("expert")):
        raise ConfigError(
            f"{source.path}: interactive runs need a simulated intervener for the env; env {env_id!r} has none "
            f"(have: {', '.join(INTERVENERS)}) and the data names no expert that recorded it"
        )
    elif source.env.get("kwargs", {}).get("obs", "state") != "state":
        raise ConfigError(
            f"{source.path}: the simulated intervener reads the env's state; this data observes "
            f"obs={source.env['kwargs']['obs']!r} (pictures), expected obs='state'"
        )
    run_dir = Path(out)
    state = _open_run(run_dir, method, seed, config, source, None if player is None else player.name)
    family = get_env_family(env_id)
    env_kwargs = dict(source.env.get("kwargs", {}))
    tasks = split_tasks(source.env, "train", seed, 1)
    intervener: Intervener | None = None
    if player is None:
        intervener = _simulated_intervener(source, config)
        intervener.labels_used = sum(r["expert_labels"] for r in state["rounds"])
    dataset = Dataset.open(run_dir / state["dataset"])
    for i in range(len(state["rounds"]), rounds):
        policy = _train_round(method, dataset, run_dir, i, seed, config, show_progress)
        _call(hook, i, "trained")
        # DAgger: every state in the data has its label already, so the expert is not asked twice.
        if method == "dagger" and intervener is not None:
            intervener.remember(np.asarray(dataset.column("obs")), np.asarray(dataset.column("expert_action")))
        # Episode k plays training task k % len(tasks), counting on from the demonstrations: when they hold one
        # episode a task, the rounds visit the tasks no demonstration shows first.
        first = source.num_episodes + i * config.episodes_per_round
        ids = np.arange(first, first + config.episodes_per_round)
        beta = config.beta * config.beta_decay**i if method == "dagger" else None
        round_seed = derive_seed(seed, f"round:{i}")
        used = sum(r["expert_labels"] for r in state["rounds"])
        round_limit = None if config.labels_per_round is None else used + config.labels_per_round
        if player is not None:
            left = labels_left(used, config.label_budget, round_limit)
            to_play = RoundToPlay(i, policy, family, tasks, ids, round_seed, env_kwargs, config.max_episode_steps, left)
            play = player.play(to_play)
        else:
            assert intervener is not None  # made above whenever no player plays the rounds
            intervener.round_limit = round_limit
            play = play_round(
                policy, family, tasks, ids, round_seed, intervener, beta, env_kwargs, config.max_episode_steps
            )
        _call(hook, i, "collected")
        dataset = _append_round(run_dir, state, dataset, method, config, i, play)
        _call(hook, i, "appended")
        if log is not None:
            stats = state["rounds"][-1]
            log(
                f"round {i}: {stats['episodes']} episodes, {stats['steps']} steps, "
                f"{stats['expert_labels']} expert labels, {stats['intervention_steps']} intervention steps, "
                f"{stats['successes']} reached the goal"
            )
    final = _train_round(method, dataset, run_dir, len(state["rounds"]), seed, config, show_progress)
    return InteractiveRun(run_dir, dataset, final, list(state["rounds"]))


def _simulated_intervener(source: Dataset, config: InteractiveConfig) -> Intervener:
    """The env's intervener from ``INTERVENERS``; for any other env (e.g. ``gym:Pendulum-v1``) an
    :class:`ExpertIntervener` over the expert that recorded the demonstrations (named in the env block)."""
    env_id = source.env["id"]
    if env_id in INTERVENERS:
        return INTERVENERS[env_id](config, source.space("action"))
    kwargs = source.env.get("kwargs", {})
    env = f"{env_id}:{kwargs['id']}" if isinstance(kwargs.get("id"), str) else env_id  # FAMILY:ID, as collected
    expert = make_expert(env, source.env["expert"], **source.env.get("expert_kwargs", {}))
    return ExpertIntervener(expert, source.space("action"), config.expert_intervener_config())


def train_config_for(method: str, config: InteractiveConfig, seed: int) -> TrainConfig:
    """How ``method`` trains its policy on the run's dataset (labels, sampling weights)."""
    return TrainConfig(
        steps=config.train_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_schedule=config.lr_schedule,
        seed=seed,
        checkpoint_every=max(config.train_steps // 2, 1),
        keep_checkpoints=1,
        tensorboard=False,
        action_labels="expert_action" if method == "dagger" else "action",
        sample_weights=None if method == "dagger" else "weight",
        val_fraction=0.0,
    )


def policy_for(policy: str, dataset: Dataset) -> str:
    """The policy to train: ``policy``, or for ``"auto"`` ``continuous_bc`` on Box actions and ``bc`` otherwise."""
    if policy != "auto":
        return policy
    return "continuous_bc" if isinstance(dataset.space("action"), gym.spaces.Box) else "bc"


def load_round_policy(run_dir: str | Path, round_index: int) -> Policy:
    """The policy that played round ``round_index`` of a run (the number of rounds: the final policy)."""
    return load_policy(Path(run_dir) / "policies" / f"round_{round_index}")


def _call(hook: RoundHook | None, round_index: int, stage: str) -> None:
    if hook is not None:
        hook(round_index, stage)


def _train_round(
    method: str, dataset: Dataset, run_dir: Path, i: int, seed: int, config: InteractiveConfig, show_progress: bool
) -> Policy:
    train_config = train_config_for(method, config, derive_seed(seed, f"train:{i}") % 2**31)
    return train(
        policy_for(config.policy, dataset),
        dataset,
        run_dir / "policies" / f"round_{i}",
        train_config,
        policy_overrides=dict(config.policy_overrides),
        resume=True,
        show_progress=show_progress,
    )


def _open_run(
    run_dir: Path, method: str, seed: int, config: InteractiveConfig, source: Dataset, intervener: str | None = None
) -> dict[str, Any]:
    """The run's state from ``run.json``, after checking it fits this call; a new run's state, with its
    first dataset (the demonstrations), when ``run_dir`` has none. ``intervener``: the name of the
    :class:`RoundPlayer` playing the rounds (None: the simulated intervener; not recorded then)."""
    header: dict[str, Any] = {
        "format": RUN_FORMAT,
        "method": method,
        "seed": seed,
        "config": config_to_json(config),
        "source": {"path": str(source.path), "fingerprint": source.fingerprint},
    }
    if intervener is not None:
        header["intervener"] = intervener
    path = run_dir / RUN_FILE
    if path.exists():
        state = read_json(path, "interactive run")
        for key in ("format", "method", "seed"):
            if state.get(key) != header[key]:
                raise CheckpointError(
                    f"{path}: {key}: the run was started with {state.get(key)!r}, this call has {header[key]!r}; "
                    "use the same settings to continue it, or another --out"
                )
        if state.get("intervener") != intervener:
            raise CheckpointError(
                f"{path}: intervener: the run was played by {state.get('intervener') or 'simulated'!r}, this call "
                f"has {intervener or 'simulated'!r}; use the same --intervener to continue it, or another --out"
            )
        check_same_config(config, state.get("config"), str(path))
        if state.get("source", {}).get("fingerprint") != source.fingerprint:
            raise CheckpointError(
                f"{path}: source: the run started from dataset {state.get('source', {}).get('fingerprint')}, "
                f"but {source.path} is {source.fingerprint}"
            )
        remove_stale_datasets(run_dir, state["dataset"])
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise CheckpointError(f"{run_dir}: exists and is not an interactive run (no {RUN_FILE}); choose another --out")
    else:
        state = {**header, "dataset": "data-000", "rounds": []}
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, state)
    if not state["rounds"] and not (run_dir / state["dataset"]).is_dir():  # killed before it was written
        task_index = _demo_task_index(source)
        episodes = [(_demo_episode(source, k, method, config), int(task_index[k])) for k in range(source.num_episodes)]
        _write_dataset(run_dir / state["dataset"], source, method, episodes, state)
    return state


def _demo_task_index(source: Dataset) -> np.ndarray:
    """Each demonstration's task index (-1 when the dataset does not record it)."""
    if "task_index" in source.meta.get("episode_info", []):
        return source.episode_info("task_index")
    return np.full(source.num_episodes, -1, dtype=np.int64)


def _demo_episode(source: Dataset, k: int, method: str, config: InteractiveConfig) -> Episode:
    steps = source.episode(k)
    action = np.asarray(steps["action"])
    episode: Episode = {
        name: np.asarray(steps[name]) for name in ("obs", "action", "reward", "terminated", "truncated")
    }
    episode["intervention"] = np.zeros(len(action), dtype=bool)
    episode["expert_action"] = action
    episode["round"] = np.full(len(action), -1, dtype=np.int64)
    if method != "dagger":
        episode["weight"] = _weights(method, config).of(segment_classes(episode["intervention"], True, 0))
    return episode


def _weights(method: str, config: InteractiveConfig) -> SegmentWeights:
    return HG_DAGGER_WEIGHTS if method == "hg_dagger" else config.segment_weights()


def _append_round(
    run_dir: Path,
    state: dict[str, Any],
    dataset: Dataset,
    method: str,
    config: InteractiveConfig,
    i: int,
    play: RoundPlay,
) -> Dataset:
    """Write the dataset with round ``i``'s episodes appended, switch ``run.json`` to it, delete the old one."""
    episodes: list[tuple[Episode, int]] = []
    task_index = dataset.episode_info("task_index")
    for k in range(dataset.num_episodes):
        old = dataset.episode(k)
        episodes.append(({name: np.asarray(values) for name, values in old.items()}, int(task_index[k])))
    weights = _weights(method, config)
    for episode, task in play.episodes:
        episode = {**episode, "round": np.full(len(episode["action"]), i, dtype=np.int64)}
        if method != "dagger":
            classes = segment_classes(episode["intervention"], False, weights.pre_window)
            episode["weight"] = weights.of(classes)
        episodes.append((episode, task))
    if method == "rlif":  # the critic is refitted on all data every round, so every step's weight changes
        played = [episode for episode, _ in episodes]
        weighted = rlif_weights(
            played,
            [bool(episode["round"][0] < 0) for episode in played],
            discrete_actions(dataset.space("action")),
            config.critic_config(),
            derive_seed(state["seed"], f"critic:{i}"),
            config.delay,
        )
        episodes = [({**episode, "weight": w}, task) for (episode, task), w in zip(episodes, weighted, strict=True)]
    new_state = {**state, "dataset": f"data-{i + 1:03d}", "rounds": [*state["rounds"], {"round": i, **play.stats()}]}
    written = _write_dataset(run_dir / new_state["dataset"], dataset, method, episodes, new_state)
    acknowledge_dataset(run_dir, RUN_FILE, state, new_state)
    return written


def _write_dataset(
    path: Path, like: Dataset, method: str, episodes: list[tuple[Episode, int]], state: dict[str, Any]
) -> Dataset:
    action = like.streams["action"]
    streams = [
        like.streams["obs"],
        action,
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        array_stream("intervention", "bool", (), "the expert's action ran"),
        array_stream("expert_action", action.dtype, action.shape, "the expert's label (the executed action if none)"),
        array_stream("round", "int64", (), "interactive round; -1 for the demonstrations"),
    ]
    if method != "dagger":
        source = "advantage" if method == "rlif" else "segment class"
        streams.append(array_stream("weight", "float32", (), f"sampling weight ({source})"))
    extra = {"interactive": {"method": method, "seed": state["seed"], "rounds": state["rounds"]}}
    writer = DatasetWriter(
        path, streams, spaces=like.spaces, env=like.env, episode_info=("task_index",), extra=extra, overwrite=True
    )
    with writer:
        for episode, task in episodes:
            writer.add_episode(episode, {"task_index": task})
        return writer.close()


__all__ = [
    "METHODS",
    "InteractiveConfig",
    "InteractiveRun",
    "RoundPlayer",
    "RoundToPlay",
    "check_method",
    "check_player_method",
    "load_round_policy",
    "policy_for",
    "run_interactive",
    "train_config_for",
]

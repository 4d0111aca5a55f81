"""Self-improvement (STaR / OREAL): ``clonekit improve RUN --out OUT --rounds R --attempts N``.

A run starts from a trained policy (``RUN``, a ``clonekit train`` directory; only read) and the dataset its
``config.json`` names (only read), and repeats for round ``r = 1 .. R``:

1. **attempt**: the current policy (round 0: ``RUN``'s; then ``OUT/round_{r-1}``) plays ``attempts`` episodes
   on every training task of the dataset (each a fresh episode of the task: for the maze, a new start cell),
   with *sampled* actions: a policy that exposes its action logits (``Policy.action_logits``, e.g. ``bc``)
   draws from ``softmax(logits / temperature)``; a policy whose ``act`` samples already (``continuous_bc``)
   acts as it is; a deterministic policy without logits cannot make varied attempts and is refused.
2. **keep** (``keep``): ``success`` keeps every successful attempt (STaR: keep what reached the answer);
   ``best`` keeps, per task, the attempt with the highest return (ties: the shorter, then the earlier)
   when it succeeded: best-of-N, which OREAL shows is enough to learn from in binary-reward settings.
   Success is the env's own signal (``step_success()`` where it has one, else ``terminated`` with a
   positive reward), as in evaluation. With ``cut_loops`` a kept attempt loses its loops and idling (the
   steps between a state and the next visit to it): a sampling policy wanders, and cloning its own detours
   teaches it to wander (measured on 7x7 mazes: without the cut, two rounds barely move greedy success).
3. **failed attempts** (``failures``, OREAL-style reshaping of negative samples; off by default): ``drop``
   discards them; ``prefix`` keeps each failed attempt's steps *before its first mistake*, with sampling
   weight ``failure_weight``. Without an expert or a value function, the first mistake is taken to be the
   first step whose effect the episode later undid: the start of its first loop back to a state it had
   been in (:mod:`clonekit.quality.extraneous`; idling counts). The steps before it made progress the
   episode never took back; a failed attempt with no loop has no located mistake and gives nothing. (OREAL
   also learns *away* from failures with a negative term; weights here are >= 0, so this variant only
   re-uses their sound prefix, down-weighted.)
4. **add and retrain**: the kept episodes join everything so far (the demonstrations and earlier rounds) in
   a new dataset ``OUT/data-00r``; a fresh policy (``RUN``'s policy and settings, its seed derived from
   ``--seed`` and ``r``) is trained on it into ``OUT/round_r``, as STaR retrains from the base each round.

The run's datasets carry ``obs``, ``action`` (for the demonstrations: the labels ``RUN`` imitated, its
``action_labels``), ``reward``, ``terminated``, ``truncated``, a text stream ``source`` (``demo``, ``self:r``
for an episode kept in round ``r``, ``self:r:prefix`` for a failed attempt's prefix) and ``weight`` (float32
sampling weight: 1, or ``failure_weight`` on prefixes; the demonstrations keep the weights ``RUN`` sampled
with); ``task_index`` per episode. A policy that reads other streams cannot learn from its own attempts, which
have none, and is refused, unless it writes the stream itself while acting (:data:`SELF_STREAMS`): a thinking
policy (``thought_cloning``) names the thought behind every action (``thoughts(state)``), so each attempt
records the policy's own thought per step in its ``thought`` stream and a kept success carries the thoughts
that produced it, as STaR keeps its own rationales (the demonstrations keep theirs). Such a policy is sampled
through its ``action_logits`` (the thought decoded greedily, the action drawn at ``temperature``), and, as it
trains on whole episodes, every kept step weighs the same: ``failures="prefix"`` (a per-step weight) is
refused for it.

Resumable: a round's dataset is written to a new directory, then ``OUT/improve.json`` switches to it
(atomically: the round is acknowledged there), then the old one is deleted; training resumes exactly. A
rerun of the same command continues at the first unfinished step and, since every draw is seeded from
``--seed``, the round and the wave of episodes, ends with the same datasets and policies as a run never
interrupted. ``--rounds`` may be raised on a rerun.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit.checkpoint import CONFIG_FILE, MODEL_FILE, load_policy, load_run_config, read_json
from clonekit.config import check, check_same_config, config_from_json, config_to_json
from clonekit.data import Dataset, DatasetWriter, array_stream, text_stream
from clonekit.envs import get_env_family
from clonekit.envs.family import EnvFamily
from clonekit.errors import CheckpointError, ConfigError, DatasetError
from clonekit.evaluation import split_tasks
from clonekit.evaluation.rollout import step_success
from clonekit.io import acknowledge_dataset, atomic_write_json, remove_stale_datasets
from clonekit.policies import Policy, policy_classes
from clonekit.quality.extraneous import loop_steps
from clonekit.quality.report import state_keys
from clonekit.seeding import derive_seed
from clonekit.train import TrainConfig, train

IMPROVE_FILE = "improve.json"
IMPROVE_FORMAT = "clonekit-improve/1"
KEEP = ("success", "best")
FAILURES = ("drop", "prefix")
# Streams a self-generated episode has; a policy that reads any other cannot learn from its attempts.
OWN_STREAMS = ("obs", "action", "reward", "terminated", "truncated")
# Streams a policy writes itself while acting: stream -> the policy method that returns, for the state its
# last ``act`` returned, one str per env (the thought behind that action).
SELF_STREAMS = {"thought": "thoughts"}

Episode = dict[str, Any]
# hook(round, stage) is called at "played", "appended" and "trained" of every round (tests kill runs there).
RoundHook = Callable[[int, str], None]


@dataclass(frozen=True)
class ImproveConfig:
    """Settings of a self-improvement run (see the module docstring).

    Args:
        attempts: Episodes the current policy plays per training task and round.
        keep: ``"success"`` (every successful attempt) or ``"best"`` (per task, the best successful one).
        temperature: Actions are drawn from ``softmax(logits / temperature)`` for policies that expose their
            logits; 0 takes the argmax (only useful where the tasks themselves vary, e.g. random starts). A
            policy whose ``act`` samples already (continuous heads) acts as it is.
        cut_loops: Cut the loops (and idling) out of every kept attempt: the steps between a state and the next
            visit to it (:mod:`clonekit.quality.extraneous`). Exact for deterministic dynamics, where the cut
            attempt still reaches its goal; a policy sampling at a temperature wanders, and this keeps it
            from cloning its own detours.
        failures: ``"drop"`` failed attempts, or keep the ``"prefix"`` before their first mistake.
        failure_weight: Sampling weight of the prefix steps (the other steps weigh 1), in (0, 1].
        train_steps: Gradient steps per round; None: as many as the starting run trained for.
        max_episode_steps: Cut every attempt after this many steps (truncated); None: the env's own limit.
        max_parallel: Attempts played together in one batched env.
    """

    attempts: int = 8
    keep: str = "success"
    temperature: float = 1.0
    cut_loops: bool = False
    failures: str = "drop"
    failure_weight: float = 0.5
    train_steps: int | None = None
    max_episode_steps: int | None = None
    max_parallel: int = 256

    def __post_init__(self) -> None:
        check(self.attempts >= 1, "attempts", ">= 1", self.attempts)
        check(self.keep in KEEP, "keep", f"one of {list(KEEP)}", self.keep)
        temperature = self.temperature
        check(math.isfinite(temperature) and temperature >= 0, "temperature", "a finite number >= 0", temperature)
        check(self.failures in FAILURES, "failures", f"one of {list(FAILURES)}", self.failures)
        check(0 < self.failure_weight <= 1, "failure_weight", "in (0, 1]", self.failure_weight)
        steps = self.train_steps
        check(steps is None or steps >= 1, "train_steps", "null or >= 1", steps)
        steps = self.max_episode_steps
        check(steps is None or steps >= 1, "max_episode_steps", "null or >= 1", steps)
        check(self.max_parallel >= 1, "max_parallel", ">= 1", self.max_parallel)


@dataclass
class ImproveRun:
    """A finished (or resumed-to-finish) run: its directory, starting run, newest dataset and per-round counts."""

    path: Path
    source_run: Path
    dataset: Dataset
    rounds: list[dict[str, Any]]

    def policy_dir(self, round_index: int) -> Path:
        """The training run of round ``round_index``'s policy (0: the starting run)."""
        return self.source_run if round_index == 0 else self.path / f"round_{round_index}"


class SampledActions:
    """Acts like ``policy`` but draws each action from ``softmax(logits / temperature)`` of its
    ``action_logits`` (argmax at temperature 0), from torch's global generator (seeded per wave by
    :func:`play_attempts`)."""

    deterministic = False

    def __init__(self, policy: Policy, temperature: float) -> None:
        self.policy = policy
        self.temperature = temperature

    def initial_state(self, batch_size: int) -> Any:
        return self.policy.initial_state(batch_size)

    def act(self, obs: dict[str, torch.Tensor], state: Any | None = None) -> tuple[torch.Tensor, Any]:
        out = self.policy.action_logits(obs, state)
        if out is None:
            raise ConfigError(f"policy {self.policy.name!r}: action_logits returned None; it cannot be sampled")
        logits, state = out
        if self.temperature == 0:
            return logits.argmax(-1), state
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        return torch.multinomial(probs, 1).squeeze(-1), state


def attempt_seed(seed: int, round_index: int) -> int:
    """The seed of round ``round_index``'s attempts (start states and action draws) in a run seeded ``seed``."""
    return derive_seed(seed, f"improve:{round_index}")


def attempt_actor(policy: Policy, temperature: float) -> Any:
    """What plays the attempts: :class:`SampledActions` for a policy with action logits, the policy itself
    when its ``act`` samples already; ``ConfigError`` for a deterministic policy without logits."""
    if type(policy).action_logits is not Policy.action_logits:
        return SampledActions(policy, temperature)
    if not policy.deterministic:
        return policy
    raise ConfigError(
        f"policy {policy.name!r} acts deterministically and exposes no action logits to sample from; "
        "self-improvement needs varied attempts (e.g. a bc policy)"
    )


def play_attempts(
    actor: Any,
    family: EnvFamily,
    tasks: list[Any],
    attempts: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    max_parallel: int = 256,
    max_steps: int | None = None,
    text_streams: dict[str, Callable[[Any], list[str]]] | None = None,
) -> list[tuple[Episode, int, bool]]:
    """Play ``attempts`` episodes per task: episode ``k`` on ``tasks[k % len(tasks)]``, ``max_parallel`` at a
    time, each wave seeded (env and action draws) from ``seed`` and its first episode.

    Returns ``(steps, task_index, success)`` per episode in episode order; ``steps`` holds ``obs``,
    ``action``, ``reward``, ``terminated`` and ``truncated`` ``(T, ...)``, and per ``text_streams`` entry
    ``name: read`` a list of ``T`` str, ``read(state)[i]`` for the state each step's ``act`` returned (e.g. a
    thinking policy's ``thoughts``: the thought behind each action).
    """
    text_streams = text_streams or {}
    total = attempts * len(tasks)
    played: list[tuple[Episode, int, bool]] = []
    for first in range(0, total, max_parallel):
        ids = np.arange(first, min(first + max_parallel, total))
        task_index = ids % len(tasks)
        vec: Any = family.make_vec([tasks[i] for i in task_index], **(env_kwargs or {}))
        obs = vec.reset(seed=derive_seed(seed, f"attempts:{first}"))
        n = len(ids)
        state = actor.initial_state(n)
        active = np.ones(n, dtype=bool)
        success = np.zeros(n, dtype=bool)
        lengths = np.zeros(n, dtype=np.int64)
        steps: dict[str, list[np.ndarray]] = {}
        step = 0
        # The actions are drawn from torch's global generator, seeded for the wave and restored afterwards.
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(derive_seed(seed, f"actions:{first}"))
            while active.any() and (max_steps is None or step < max_steps):
                action_t, state = actor.act({"obs": torch.from_numpy(obs)}, state)
                actions = action_t.cpu().numpy()
                next_obs, reward, terminated, truncated = vec.step(actions)
                record = {"obs": obs, "action": actions, "reward": reward}
                record |= {"terminated": terminated, "truncated": truncated}
                for name, read in text_streams.items():
                    record[name] = np.array(read(state), dtype=object)
                for name, value in record.items():
                    steps.setdefault(name, []).append(np.array(value))
                success |= active & step_success(vec, terminated, reward)
                lengths += active
                active &= ~(terminated | truncated)
                obs = next_obs
                step += 1
        close = getattr(vec, "close", None)
        if close is not None:
            close()
        stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}  # (B, T, ...)
        for slot in range(n):
            episode: Episode = {name: values[slot, : lengths[slot]].copy() for name, values in stacked.items()}
            for name in text_streams:
                episode[name] = [str(text) for text in episode[name]]
            if active[slot]:  # cut by max_steps
                episode["truncated"][-1] = True
            played.append((episode, int(task_index[slot]), bool(success[slot])))
    return played


def select_attempts(
    played: list[tuple[Episode, int, bool]], keep: str
) -> tuple[list[tuple[Episode, int]], list[tuple[Episode, int]]]:
    """``(kept, failed)`` episodes with their task index, in episode order (see ``keep`` in the module
    docstring); ``failed`` holds every unsuccessful attempt, whatever ``keep`` is."""
    failed = [(e, task) for e, task, ok in played if not ok]
    if keep == "success":
        return [(e, task) for e, task, ok in played if ok], failed
    best: dict[int, int] = {}  # task -> index into played of its best successful attempt
    for k, (episode, task, ok) in enumerate(played):
        if not ok:
            continue
        if task not in best or _rank(episode) < _rank(played[best[task]][0]):
            best[task] = k
    return [(played[k][0], played[k][1]) for k in sorted(best.values())], failed


def _rank(episode: Episode) -> tuple[float, int]:
    """Sorts the better attempt first: the higher return, then the shorter."""
    return -float(np.sum(episode["reward"])), len(episode["action"])


def without_loops(episode: Episode) -> Episode:
    """``episode`` without the steps on loops back to an earlier state (see ``cut_loops``)."""
    states, _ = state_keys(np.asarray(episode["obs"]))
    keep = ~loop_steps(states)
    return {name: np.asarray(values)[keep] for name, values in episode.items()}


def failure_prefix(episode: Episode) -> Episode | None:
    """The steps of a failed episode before its first mistake (the first step on a loop back to an earlier
    state), cut ``truncated``; None when it has no loop or the loop starts at its first step."""
    states, _ = state_keys(np.asarray(episode["obs"]))
    loops = loop_steps(states)
    if not loops.any():
        return None
    first = int(np.argmax(loops))
    if first == 0:
        return None
    prefix = {name: np.asarray(values)[:first].copy() for name, values in episode.items()}
    prefix["terminated"][-1] = False
    prefix["truncated"][-1] = True
    return prefix


def improve(
    run: str | Path,
    out: str | Path,
    rounds: int,
    seed: int = 0,
    config: ImproveConfig | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    hook: RoundHook | None = None,
) -> ImproveRun:
    """Run (or continue) ``rounds`` rounds of self-improvement from the trained run ``run`` into ``out``.

    An existing ``out`` continues when it was started from the same run with the same seed and settings
    (``rounds`` may be raised); otherwise ``CheckpointError``. See the module docstring.
    """
    check(rounds >= 1, "rounds", ">= 1", rounds)
    config = config or ImproveConfig()
    source_run = Path(run)
    run_config = load_run_config(source_run)
    policy_name = run_config["policy"]
    _, policy_cls = policy_classes(policy_name)
    written = self_written_streams(policy_cls)
    foreign = [s for s in policy_cls.required_streams if s not in OWN_STREAMS and s not in written]
    if foreign:
        raise ConfigError(
            f"{source_run / CONFIG_FILE}: policy {policy_name!r} reads stream(s) {foreign} that the policy's own "
            "attempts do not have; self-improvement needs a policy that learns from obs and action only"
        )
    if config.failures == "prefix" and policy_cls.windows_from_episode_start:
        raise ConfigError(
            f"failures: 'prefix' weights the steps of failed attempts, but policy {policy_name!r} trains on whole "
            "episodes without per-step weights; use failures='drop'"
        )
    source = _source_dataset(source_run, run_config)
    source_train = config_from_json(TrainConfig, run_config["train_config"], f"{source_run / CONFIG_FILE} train_config")
    if not source.env.get("tasks"):
        raise ConfigError(f"{source.path}: the env block records no training tasks to attempt (env {source.env!r})")
    out_dir = Path(out)
    state = _open_run(out_dir, source_run, source, seed, config)
    family = get_env_family(source.env["id"])
    env_kwargs = dict(source.env.get("kwargs", {}))
    tasks = split_tasks(source.env, "train", seed, 1)
    dataset = source if state["dataset"] is None else Dataset.open(out_dir / state["dataset"])
    for r in range(1, rounds + 1):
        if r > len(state["rounds"]):
            policy = load_policy(source_run if r == 1 else out_dir / f"round_{r - 1}")
            actor = attempt_actor(policy, config.temperature)
            played = play_attempts(
                actor,
                family,
                tasks,
                config.attempts,
                attempt_seed(seed, r),
                env_kwargs,
                config.max_parallel,
                config.max_episode_steps,
                {name: getattr(policy, SELF_STREAMS[name]) for name in written},
            )
            _call(hook, r, "played")
            dataset = _append_round(out_dir, state, dataset, source_train, config, r, played, written)
            _call(hook, r, "appended")
            if log is not None:
                stats = state["rounds"][-1]
                log(
                    f"round {r}: {stats['successes']}/{stats['attempts']} attempts succeeded, kept "
                    f"{stats['kept_episodes']} episodes ({stats['kept_steps']} steps), "
                    f"{stats['prefix_episodes']} failure prefixes; dataset {dataset.num_episodes} episodes"
                )
        if r == len(state["rounds"]):  # an earlier round's policy finished training before the next round played
            _train_round(policy_name, run_config, source_train, dataset, out_dir, r, seed, config, show_progress)
            _call(hook, r, "trained")
    return ImproveRun(out_dir, source_run, dataset, list(state["rounds"][:rounds]))


def self_written_streams(policy_cls: type[Policy]) -> tuple[str, ...]:
    """The streams of :data:`SELF_STREAMS` that ``policy_cls`` reads and writes itself while acting (it has
    the method that returns them), in :data:`SELF_STREAMS` order; ``()`` for a policy that reads none."""
    return tuple(
        name
        for name, method in SELF_STREAMS.items()
        if name in policy_cls.required_streams and callable(getattr(policy_cls, method, None))
    )


def _call(hook: RoundHook | None, round_index: int, stage: str) -> None:
    if hook is not None:
        hook(round_index, stage)


def _source_dataset(source_run: Path, run_config: dict[str, Any]) -> Dataset:
    """The dataset the run was trained on, checked against the fingerprint its config recorded."""
    recorded = run_config.get("dataset", {})
    if not recorded.get("path"):
        raise CheckpointError(
            f"{source_run / CONFIG_FILE}: dataset.path: expected the training data's path, found none"
        )
    path = Path(recorded["path"])
    if not path.is_dir():
        raise DatasetError(f"{path}: the training data of {source_run} not found (named in its {CONFIG_FILE})")
    dataset = Dataset.open(path)
    if recorded.get("fingerprint") != dataset.fingerprint:
        raise DatasetError(
            f"{path}: fingerprint {dataset.fingerprint}, but {source_run} was trained on {recorded.get('fingerprint')}"
        )
    return dataset


def _file_sha256(path: Path) -> str:
    if not path.is_file():
        raise CheckpointError(f"{path}: final weights not found; the starting run has not finished")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_run(out_dir: Path, source_run: Path, source: Dataset, seed: int, config: ImproveConfig) -> dict[str, Any]:
    """The run's state from ``improve.json`` after checking it fits this call; a new run's state otherwise."""
    wanted = config_to_json(config)
    origin = {
        "run": str(source_run),
        "model_sha256": _file_sha256(source_run / MODEL_FILE),
        "dataset": str(source.path),
        "dataset_fingerprint": source.fingerprint,
    }
    path = out_dir / IMPROVE_FILE
    if path.exists():
        state = read_json(path, "improve run")
        if state.get("format") != IMPROVE_FORMAT:
            raise CheckpointError(f"{path}: format: expected {IMPROVE_FORMAT!r}, found {state.get('format')!r}")
        if state.get("seed") != seed:
            raise CheckpointError(
                f"{path}: seed: the run was started with {state.get('seed')!r}, this call has {seed!r}; "
                "use the same settings to continue it, or another --out"
            )
        check_same_config(config, state.get("config"), str(path))
        recorded = state.get("source", {})
        for key in ("model_sha256", "dataset_fingerprint"):
            if recorded.get(key) != origin[key]:
                raise CheckpointError(
                    f"{path}: source.{key}: the run started from {recorded.get(key)!r}, but {source_run} now gives "
                    f"{origin[key]!r}; use another --out"
                )
        remove_stale_datasets(out_dir, state["dataset"])
        return state
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CheckpointError(
            f"{out_dir}: exists and is not a self-improvement run (no {IMPROVE_FILE}); choose another --out"
        )
    state = {"format": IMPROVE_FORMAT, "seed": seed, "config": wanted, "source": origin, "dataset": None, "rounds": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, state)
    return state


def _episodes_so_far(
    dataset: Dataset, source_train: TrainConfig, is_source: bool, written: tuple[str, ...] = ()
) -> list[tuple[Episode, int]]:
    """Every episode of ``dataset`` in the run's stream layout: the starting data converted (``source`` "demo",
    its imitated labels as ``action``, its sampling weights, its ``written`` streams), or a run dataset as it
    is."""
    if "task_index" in dataset.meta.get("episode_info", []):
        task_index = dataset.episode_info("task_index")
    else:
        task_index = np.full(dataset.num_episodes, -1, dtype=np.int64)
    episodes = []
    for k in range(dataset.num_episodes):
        steps = dataset.episode(k)
        if is_source:
            length = len(steps["action"])
            episode: Episode = {name: np.asarray(steps[name]) for name in OWN_STREAMS}
            episode["action"] = np.asarray(steps[source_train.action_labels])
            weights = source_train.sample_weights
            episode["weight"] = np.asarray(steps[weights], np.float32) if weights else np.ones(length, np.float32)
            episode["source"] = ["demo"] * length
            for name in written:
                episode[name] = list(steps[name])
        else:
            episode = {
                name: (values if isinstance(values, list) else np.asarray(values)) for name, values in steps.items()
            }
        episodes.append((episode, int(task_index[k])))
    return episodes


def _append_round(
    out_dir: Path,
    state: dict[str, Any],
    dataset: Dataset,
    source_train: TrainConfig,
    config: ImproveConfig,
    r: int,
    played: list[tuple[Episode, int, bool]],
    written: tuple[str, ...] = (),
) -> Dataset:
    """Write the dataset with round ``r``'s kept episodes appended, switch ``improve.json`` to it, delete the
    previous one (never the starting data). ``written``: the policy's own streams the episodes carry."""
    episodes = _episodes_so_far(dataset, source_train, state["dataset"] is None, written)
    kept, failed = select_attempts(played, config.keep)
    if config.cut_loops:
        kept = [(without_loops(episode), task) for episode, task in kept]
    for episode, task in kept:
        length = len(episode["action"])
        episodes.append(({**episode, "weight": np.ones(length, np.float32), "source": [f"self:{r}"] * length}, task))
    prefixes = []
    if config.failures == "prefix":
        for episode, task in failed:
            prefix = failure_prefix(episode)
            if prefix is not None:
                length = len(prefix["action"])
                weight = np.full(length, config.failure_weight, np.float32)
                prefixes.append(({**prefix, "weight": weight, "source": [f"self:{r}:prefix"] * length}, task))
    episodes += prefixes
    stats = {
        "round": r,
        "attempts": len(played),
        "successes": sum(ok for _, _, ok in played),
        "kept_episodes": len(kept),
        "kept_steps": sum(len(e["action"]) for e, _ in kept),
        "prefix_episodes": len(prefixes),
        "prefix_steps": sum(len(e["action"]) for e, _ in prefixes),
    }
    new_state = {**state, "dataset": f"data-{r:03d}", "rounds": [*state["rounds"], stats]}
    result = _write_dataset(out_dir / new_state["dataset"], dataset, episodes, new_state, written)
    acknowledge_dataset(out_dir, IMPROVE_FILE, state, new_state)
    return result


def _write_dataset(
    path: Path,
    like: Dataset,
    episodes: list[tuple[Episode, int]],
    state: dict[str, Any],
    written: tuple[str, ...] = (),
) -> Dataset:
    streams = [
        like.streams["obs"],
        like.streams["action"],
        array_stream("reward", "float32"),
        array_stream("terminated", "bool"),
        array_stream("truncated", "bool"),
        text_stream("source", "demo, or self:R for an episode the policy of round R-1 played (:prefix: a failure's)"),
        array_stream("weight", "float32", (), "sampling weight"),
        *(like.streams[name] for name in written),
    ]
    extra = {"improve": {"seed": state["seed"], "source": state["source"], "rounds": state["rounds"]}}
    writer = DatasetWriter(
        path, streams, spaces=like.spaces, env=like.env, episode_info=("task_index",), extra=extra, overwrite=True
    )
    with writer:
        for episode, task in episodes:
            writer.add_episode(episode, {"task_index": task})
        return writer.close()


def _train_round(
    policy_name: str,
    run_config: dict[str, Any],
    source_train: TrainConfig,
    dataset: Dataset,
    out_dir: Path,
    r: int,
    seed: int,
    config: ImproveConfig,
    show_progress: bool,
) -> Policy:
    _, policy_cls = policy_classes(policy_name)
    train_config = replace(
        source_train,
        steps=config.train_steps or source_train.steps,
        seed=derive_seed(seed, f"improve-train:{r}") % 2**31,
        action_labels="action",
        # A policy that samples whole episodes takes no per-step weights (every kept step weighs 1 for it).
        sample_weights=None if policy_cls.windows_from_episode_start else "weight",
    )
    return train(
        policy_name,
        dataset,
        out_dir / f"round_{r}",
        train_config,
        policy_overrides=dict(run_config["policy_config"]),
        resume=True,
        show_progress=show_progress,
    )


__all__ = [
    "FAILURES",
    "KEEP",
    "SELF_STREAMS",
    "ImproveConfig",
    "ImproveRun",
    "SampledActions",
    "attempt_actor",
    "attempt_seed",
    "failure_prefix",
    "improve",
    "play_attempts",
    "select_attempts",
    "self_written_streams",
    "without_loops",
]

"""Recovery splicing (Agent-R-style): teach a policy to recover after a mistake.

From failed or imperfect episodes (a policy's rollouts, noisy demonstrations, :func:`perturbed_rollouts`),
:func:`recovery_episodes` finds each episode's **first mistake** and splices the episode up to and including it
with an **expert continuation** from the state the mistake led to:

1. The env is reset to the episode: a one-slot env on the episode's task (``task_index`` and the dataset's env
   block), started where the episode started (the family's ``restart`` hook when the task alone does not fix the
   start, as for mazes; otherwise a plain reset).
2. The recorded actions are replayed, and every replayed observation must equal the recorded one (else a one-line
   ``DatasetError`` naming the episode and step: the env is not deterministic, or the data was edited). At each
   step the judge decides whether the recorded action is a mistake: a user's ``judge(obs, action) -> bool``
   (true: a mistake); else the expert's own ``mistakes(obs, actions)`` hook (the maze BFS expert: a move that does
   not bring the agent closer to the goal); else disagreement with the expert's action (discrete: another action;
   continuous: farther than ``tolerance`` in any dimension).
3. After the first mistake has run, the expert plays from the resulting state until the episode ends. Only
   splices the expert finishes successfully are kept. With ``resume_after`` (a bool stream of the dataset, such
   as :func:`perturbed_rollouts`' ``perturbed``) and a mistake on a marked step, the recorded steps run on to the
   end of that run of marked steps (a whole burst of random actions) and the expert takes over from there: the
   way back from where the burst left the agent, not from its first wrong step.

A spliced episode holds the recorded prefix (the steps before the mistake, which the judge accepted), the mistake
step (with ``resume_after``, the rest of its run too) and the expert's steps; its ``source`` stream reads
``recovery`` and its ``weight`` stream is 0 at the mistake (and the rest of its run) and 1 elsewhere, so training
with ``sample_weights="weight"`` learns the recovery and never the mistake (the mistake's *consequence*, the state
after it, is the first step the expert acts in). Streams the expert does not write are blank (zeros, empty text) in
its steps. Episode info: ``recovered_from`` (the source episode) and ``mistake_step``.

:func:`perturbed_rollouts` produces episodes to splice: an actor (a trained policy, or an expert) on training
tasks with a random action in place of the actor's with probability ``rate`` per step, and/or one ``burst`` of
random actions in a row an episode. :class:`RandomActionPolicy` and :class:`BurstActionPolicy` are the matching
evaluation protocols (``rollout`` of a policy whose actions are replaced so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np
import torch

from clonekit.data import Dataset, DatasetWriter, StreamSpec, array_stream
from clonekit.data.formats.source import python_scalar
from clonekit.data.spaces import space_to_json
from clonekit.envs import get_env_family
from clonekit.envs.family import EnvFamily
from clonekit.errors import ConfigError, DatasetError
from clonekit.experts import Expert, make_expert
from clonekit.policies import Policy
from clonekit.quality.curate import SOURCE_STREAM, WEIGHT_STREAM, AddedEpisodes, Episode, blank_steps
from clonekit.seeding import derive_seed

# One step: (observation, action) -> True when the action is a mistake.
Judge = Callable[[np.ndarray, np.ndarray], bool]
RECOVERY = "recovery"


def first_mistake(obs: np.ndarray, actions: np.ndarray, is_mistake: Judge) -> int | None:
    """The first step ``t`` of an episode (observations ``(T, ...)``, actions ``(T, ...)``) whose action the judge
    calls a mistake, or None."""
    for t in range(len(actions)):
        if is_mistake(obs[t], actions[t]):
            return t
    return None


def _step_judge(expert: Expert, judge: Judge | None, tolerance: float) -> Callable[[np.ndarray, np.ndarray], bool]:
    """Judge of one step given batches of one: ``(1, *obs)``, ``(1, *action)``."""
    if judge is not None:
        return lambda obs, action: bool(judge(obs[0], action[0]))
    mistakes = getattr(expert, "mistakes", None)
    if mistakes is not None:
        return lambda obs, action: bool(np.asarray(mistakes(obs, action))[0])

    def disagrees(obs: np.ndarray, action: np.ndarray) -> bool:
        wanted = np.asarray(expert.act(obs)[0])
        if np.issubdtype(wanted.dtype, np.integer):
            return not np.array_equal(wanted, action)
        return bool(np.abs(wanted.astype(np.float64) - action).max() > tolerance)

    return disagrees


def judge_name(expert: Expert, judge: Judge | None, judge_spec: str | None = None) -> str:
    """How mistakes are judged, as the curation log records it."""
    if judge is not None:
        return judge_spec or str(getattr(judge, "__name__", "judge"))
    if getattr(expert, "mistakes", None) is not None:
        return f"expert {expert.name}: mistakes()"
    return f"expert {expert.name}: action disagreement"


def _same(replayed: np.ndarray, recorded: np.ndarray, atol: float) -> bool:
    if atol == 0 or not np.issubdtype(recorded.dtype, np.floating):
        return bool(np.array_equal(replayed, recorded))
    return bool(np.allclose(replayed, recorded, rtol=0.0, atol=atol))


def restart(family: EnvFamily, task: Any, env_kwargs: dict[str, Any], first_obs: np.ndarray) -> tuple[Any, np.ndarray]:
    """A one-slot vec env on ``task`` reset to where a recorded episode started (its first observation
    ``first_obs``), and its observations ``(1, ...)``."""
    vec: Any = family.make_vec([task], **env_kwargs)
    hook = getattr(family, "restart", None)
    obs = hook(vec, first_obs[None]) if hook is not None else vec.reset(seed=0)
    return vec, np.asarray(obs)


def splice_episode(
    dataset: Dataset,
    k: int,
    expert: Expert,
    judge: Judge | None = None,
    *,
    seed: int = 0,
    tolerance: float = 0.1,
    atol: float = 0.0,
    resume_after: str | None = None,
) -> tuple[Episode | None, str]:
    """Splice episode ``k`` of ``dataset`` (see the module docstring): ``(episode, "")``, or ``(None, reason)``
    when it gives no recovery episode (``"no mistake"``, ``"ended at its mistake"``, ``"expert did not finish"``).
    ``resume_after``: a bool stream; a mistake on a step it marks runs on to the end of the marked run.

    Raises ``DatasetError`` when the recorded actions do not replay to the recorded observations, or
    ``resume_after`` names no stream of the dataset.
    """
    where = f"{dataset.path}: episode {k}"
    family, task, env_kwargs = _episode_task(dataset, k)
    recorded = dataset.episode(k)
    obs_rec = np.asarray(recorded["obs"])
    actions = np.asarray(recorded["action"])
    marked = _marked_steps(dataset, recorded, resume_after, len(actions))
    vec, obs = restart(family, task, env_kwargs, obs_rec[0])
    if not _same(obs[0], obs_rec[0], atol):
        raise DatasetError(f"{where} does not replay: the env restarted in another state than the recorded step 0")
    state_env: Any = getattr(vec, "state_env", vec)  # a pixel env's expert reads the state it draws
    expert.reset(state_env, seed=derive_seed(seed, f"recovery:{k}"))
    is_mistake = _step_judge(expert, judge, tolerance)
    mistake: int | None = None
    last = -1  # the last recorded step kept: the mistake, or the end of its marked run
    done = False
    for t in range(len(actions)):
        if mistake is None:
            view = obs if state_env is vec else state_env.observe()
            if is_mistake(view, actions[t : t + 1]):
                mistake = t
        obs, _, terminated, truncated = vec.step(actions[t : t + 1])
        done = bool(terminated[0] or truncated[0])
        if t + 1 < len(actions) and not _same(obs[0], obs_rec[t + 1], atol):
            raise DatasetError(
                f"{where} does not replay: step {t + 1}'s observation differs from the recorded one after the same "
                "actions (a non-deterministic env, or edited data)"
            )
        if mistake is not None and (done or t + 1 == len(actions) or not (marked[t] and marked[t + 1])):
            last = t
            break
    if mistake is None:
        return None, "no mistake"
    if done:
        return None, "ended at its mistake"
    steps: dict[str, list[Any]] = {}
    reward, terminated, truncated = np.zeros(1), np.zeros(1, bool), np.zeros(1, bool)
    while not done:
        action, annotations = expert.act(obs if state_env is vec else state_env.observe())
        record = {
            "obs": obs[0],
            "action": np.asarray(action)[0],
            **{n: np.asarray(v)[0] for n, v in annotations.items()},
        }
        obs, reward, terminated, truncated = vec.step(np.asarray(action))
        record |= {"reward": reward[0], "terminated": terminated[0], "truncated": truncated[0]}
        for name, value in record.items():
            steps.setdefault(name, []).append(value)
        done = bool(terminated[0] or truncated[0])
    success = getattr(vec, "step_success", None)
    finished = bool(success()[0]) if success is not None else bool(terminated[0] and reward[0] > 0)
    if not finished:
        return None, "expert did not finish"
    return _join(dataset, recorded, mistake, last, steps), ""


def _join(
    dataset: Dataset, recorded: dict[str, Any], mistake: int, last: int, continuation: dict[str, list[Any]]
) -> Episode:
    """The recorded steps ``0 .. last`` followed by the expert's steps, every stream of ``dataset``; weight 0 at
    steps ``mistake .. last``."""
    prefix, added = last + 1, len(continuation["action"])
    episode: Episode = {}
    for name, spec in dataset.streams.items():
        if name in (SOURCE_STREAM.name, WEIGHT_STREAM.name):
            continue
        head = recorded[name][:prefix]
        if spec.kind == "text":
            tail = continuation.get(name, blank_steps(spec, added))
            episode[name] = [*head, *tail]
        else:
            tail = np.asarray(continuation[name]) if name in continuation else blank_steps(spec, added)
            episode[name] = np.concatenate([np.asarray(head), np.asarray(tail, dtype=spec.dtype)])
    weight = np.ones(prefix + added, dtype=np.float32)
    weight[mistake:prefix] = 0.0
    episode[SOURCE_STREAM.name] = [RECOVERY] * (prefix + added)
    episode[WEIGHT_STREAM.name] = weight
    return episode


def _marked_steps(dataset: Dataset, recorded: dict[str, Any], stream: str | None, length: int) -> np.ndarray:
    """``(T,)`` bool: the steps of an episode that ``stream`` marks (none without a stream)."""
    if stream is None:
        return np.zeros(length, dtype=bool)
    spec = dataset.streams.get(stream)
    if spec is None or spec.kind == "text" or spec.shape != ():
        found = "no such stream" if spec is None else f"a {spec.kind} stream of shape {spec.shape}"
        raise DatasetError(f"{dataset.path}: resume_after {stream!r}: expected a bool stream per step, found {found}")
    return np.asarray(recorded[stream], dtype=bool)


def _episode_task(dataset: Dataset, k: int) -> tuple[EnvFamily, Any, dict[str, Any]]:
    env = dataset.env
    tasks = env.get("tasks") if isinstance(env, dict) else None
    if not tasks or "id" not in env:
        raise DatasetError(f"{dataset.path}: recovery needs the env block's 'id' and 'tasks' (to replay episodes)")
    if "task_index" not in dataset.meta.get("episode_info", []):
        raise DatasetError(f"{dataset.path}: recovery needs the episode info 'task_index' (to replay episodes)")
    index = int(dataset.episode_info("task_index")[k])
    if not 0 <= index < len(tasks):
        raise DatasetError(
            f"{dataset.path}: episode {k}: task_index {index} names no recorded task (0..{len(tasks) - 1})"
        )
    family = get_env_family(env["id"])
    kwargs = dict(env.get("kwargs", {}))
    return family, family.task_from_json(tasks[index], **kwargs), kwargs


def recovery_episodes(
    dataset: Dataset,
    expert: str | Expert,
    judge: Judge | None = None,
    *,
    episodes: Sequence[int] | None = None,
    seed: int = 0,
    expert_kwargs: dict[str, Any] | None = None,
    judge_spec: str | None = None,
    tolerance: float = 0.1,
    resume_after: str | None = None,
) -> AddedEpisodes:
    """Recovery episodes spliced from ``episodes`` of ``dataset`` (default: all), for :func:`curate`'s ``added``.

    ``expert`` is an expert of the dataset's env (a registered name such as ``bfs``, an outside spec, or an
    :class:`~clonekit.experts.Expert`). ``resume_after``: a bool stream (e.g. ``perturbed``); a mistake on a step it
    marks runs on to the end of the marked run before the expert takes over. Episodes whose ``source`` stream says
    they are not the env's own (``augmented``: a transformed task) are skipped. The log counts the spliced and the
    skipped episodes by reason, and lists every splice's source episode and mistake step.
    """
    env_id = dataset.env.get("id") if isinstance(dataset.env, dict) else None
    if not isinstance(env_id, str):
        raise DatasetError(f"{dataset.path}: recovery needs the env block's 'id' (to replay episodes)")
    the_expert = make_expert(env_id, expert, **(expert_kwargs or {})) if isinstance(expert, str) else expert
    chosen = range(dataset.num_episodes) if episodes is None else episodes
    info_names = list(dataset.meta.get("episode_info", []))
    sources = dataset.column(SOURCE_STREAM.name) if SOURCE_STREAM.name in dataset.streams else None
    added: list[tuple[Episode, dict[str, Any]]] = []
    spliced: list[dict[str, int]] = []
    skipped: dict[str, list[int]] = {}
    for k in chosen:
        if sources is not None and sources[int(dataset.episode_starts[k])] == "augmented":
            skipped.setdefault("augmented (its task is not recorded)", []).append(int(k))
            continue
        episode, reason = splice_episode(
            dataset, int(k), the_expert, judge, seed=seed, tolerance=tolerance, resume_after=resume_after
        )
        if episode is None:
            skipped.setdefault(reason, []).append(int(k))
            continue
        mistake = int(np.flatnonzero(episode[WEIGHT_STREAM.name] == 0)[0])
        info = {n: python_scalar(f"{dataset.path}: episode {k}", dataset.episode_info(n)[k]) for n in info_names}
        added.append((episode, {**info, "recovered_from": int(k), "mistake_step": mistake}))
        spliced.append({"episode": int(k), "mistake_step": mistake})
    log = {
        "expert": the_expert.name,
        "judge": judge_name(the_expert, judge, judge_spec),
        "weights": "0 at the mistake step, 1 elsewhere"
        if resume_after is None
        else f"0 from the mistake step to the end of its run of {resume_after!r} steps, 1 elsewhere",
        "spliced": spliced,
        "skipped": {reason: len(ks) for reason, ks in skipped.items()},
    }
    return AddedEpisodes(
        f"recovery:{the_expert.name}", added, info_defaults={"recovered_from": -1, "mistake_step": -1}, log=log
    )


class Actor(Protocol):
    """What :func:`perturbed_rollouts` plays: ``reset(vec, seed)`` per batch, then ``act(obs) -> actions``."""

    name: str

    def reset(self, vec: Any, seed: int) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...


class ExpertActor:
    """An :class:`~clonekit.experts.Expert` as an :class:`Actor` (its annotation streams are dropped)."""

    def __init__(self, expert: Expert) -> None:
        self.expert = expert
        self.name = f"expert {expert.name}"
        self._state_env: Any = None

    def reset(self, vec: Any, seed: int) -> None:
        self._state_env = getattr(vec, "state_env", vec)
        self.expert.reset(self._state_env, seed=seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        view = obs if getattr(self._state_env, "observe", None) is None else self._state_env.observe()
        return np.asarray(self.expert.act(view)[0])


class PolicyActor:
    """A trained :class:`~clonekit.policies.Policy` as an :class:`Actor` (batched, memory carried)."""

    def __init__(self, policy: Policy, device: torch.device | str = "cpu") -> None:
        self.policy = policy
        self.device = device
        self.name = f"policy {policy.name}"
        self._memory: Any = None
        self._inputs: dict[str, torch.Tensor] = {}

    def reset(self, vec: Any, seed: int) -> None:
        torch.manual_seed(seed)
        self.policy.eval()
        self._memory = self.policy.initial_state(vec.num_envs)
        inputs = getattr(vec, "policy_inputs", None)
        self._inputs = {n: torch.from_numpy(v).to(self.device) for n, v in (inputs() if inputs else {}).items()}

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            action, self._memory = self.policy.act(
                {"obs": torch.from_numpy(np.ascontiguousarray(obs)).to(self.device), **self._inputs}, self._memory
            )
        return action.cpu().numpy()


def random_actions(space: gym.Space[Any], rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uniform random actions of a Discrete or Box ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.start) + rng.integers(int(space.n), size=count)
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high, size=(count, *space.shape)).astype(space.dtype)
    raise ConfigError(f"random actions: expected a Discrete or Box action space, got {space}")


def perturbed_rollouts(
    env: str,
    actor: Actor,
    *,
    tasks: list[Any],
    episodes: int,
    seed: int,
    rate: float,
    out: str | Path,
    env_kwargs: dict[str, Any] | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    burst: int = 0,
    burst_window: int = 1,
    burst_repeat: bool = False,
) -> Dataset:
    """Play ``episodes`` episodes of ``actor`` (episode ``k`` on ``tasks[k % len(tasks)]``) where each step's action
    is replaced by a uniform random one with probability ``rate``; write them to ``out`` as a dataset. With
    ``burst`` > 0, every episode also plays ``burst`` random actions in a row from a step drawn uniformly from
    ``[0, burst_window)``, with ``burst_repeat`` one random action repeated (the protocols of
    :class:`BurstActionPolicy`).

    The dataset records the env block (``id``, ``kwargs``, ``seed``, ``tasks``, the actor and the rate) and the
    episode info ``task_index``, like ``clonekit collect``, so :func:`recovery_episodes` can replay it; its
    ``perturbed`` stream marks the random steps. Batches are seeded from ``seed`` and their first episode.
    """
    if not 0 <= rate <= 1:
        raise ConfigError(f"rate: expected a probability in [0, 1], got {rate}")
    if burst < 0 or burst_window < 1:
        raise ConfigError(f"burst, burst_window: expected >= 0 and >= 1, got {burst} and {burst_window}")
    if episodes < 1 or not tasks:
        raise ConfigError(f"perturbed_rollouts: expected episodes >= 1 and tasks, got {episodes} and {len(tasks)}")
    family = get_env_family(env)
    env_kwargs = dict(env_kwargs or {})
    obs_space, act_space = family.spaces(**env_kwargs)
    assert obs_space.shape is not None
    streams: list[StreamSpec] = [
        array_stream("obs", obs_space.dtype or "float32", obs_space.shape, "observation"),
        array_stream("action", act_space.dtype or "int64", act_space.shape or (), "executed action")
        if act_space.shape
        else array_stream("action", "int64", (), "executed action"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        array_stream("perturbed", "bool", (), "the action was a random one in place of the actor's"),
    ]
    meta_env = {
        "id": family.name,
        "kwargs": env_kwargs,
        "seed": seed,
        "tasks": [family.task_to_json(t) for t in tasks],
        "actor": actor.name,
        "random_action_rate": rate,
        **({"burst": burst, "burst_window": burst_window, "burst_repeat": burst_repeat} if burst else {}),
    }
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=meta_env,
        episode_info=("task_index",),
        overwrite=overwrite,
    )
    with writer:
        for first in range(0, episodes, batch_size):
            ids = np.arange(first, min(first + batch_size, episodes))
            task_index = ids % len(tasks)
            vec: Any = family.make_vec([tasks[i] for i in task_index], **env_kwargs)
            obs = vec.reset(seed=derive_seed(seed, f"perturbed:{first}"))
            actor.reset(vec, derive_seed(seed, f"actor:{first}"))
            rng = np.random.default_rng(derive_seed(seed, f"random-actions:{first}"))
            burst_starts = rng.integers(0, burst_window, size=len(ids)) if burst else None
            pushes = random_actions(act_space, rng, len(ids)) if burst and burst_repeat else None
            recorded: dict[str, list[np.ndarray]] = {}
            active = np.ones(len(ids), dtype=bool)
            length = np.zeros(len(ids), dtype=np.int64)
            while active.any():
                action = np.asarray(actor.act(obs))
                perturbed = rng.random(len(ids)) < rate
                noise = random_actions(act_space, rng, len(ids))
                if burst_starts is not None:
                    in_burst = (length >= burst_starts) & (length < burst_starts + burst)
                    perturbed |= in_burst
                    if pushes is not None:
                        noise = np.where(in_burst.reshape(-1, *([1] * (noise.ndim - 1))), pushes, noise)
                action = np.where(perturbed.reshape(-1, *([1] * (action.ndim - 1))), noise, action)
                record = {"obs": obs, "action": action, "perturbed": perturbed}
                obs, reward, terminated, truncated = vec.step(action)
                record |= {"reward": reward, "terminated": terminated, "truncated": truncated}
                for name, value in record.items():
                    recorded.setdefault(name, []).append(value)
                length += active
                active &= ~(terminated | truncated)
            stacked = {name: np.stack(values, axis=1) for name, values in recorded.items()}
            for slot, index in enumerate(task_index.tolist()):
                writer.add_episode({n: v[slot, : length[slot]] for n, v in stacked.items()}, {"task_index": index})
    return Dataset.open(out)


class RandomActionPolicy(Policy):
    """The perturbation protocol at evaluation: ``policy``'s action replaced, per step and env, by a uniform
    random action of ``action_space`` with probability ``rate`` (draws seeded by ``seed``). Use it with
    :func:`clonekit.evaluation.rollout` like any policy; it is never deterministic."""

    name: ClassVar[str] = "random_action_perturbed"

    def __init__(self, policy: Policy, action_space: gym.Space[Any], rate: float, seed: int) -> None:
        super().__init__()
        if not 0 <= rate <= 1:
            raise ConfigError(f"rate: expected a probability in [0, 1], got {rate}")
        self.inner = policy
        self.config = policy.config
        self.action_space = action_space
        self.rate = rate
        self._rng = np.random.default_rng(seed)

    def initial_state(self, batch_size: int) -> Any:
        return self.inner.initial_state(batch_size)

    def act(self, obs: dict[str, torch.Tensor], state: Any | None = None) -> tuple[torch.Tensor, Any]:
        action, state = self.inner.act(obs, state)
        n = action.shape[0]
        replace = self._rng.random(n) < self.rate
        if replace.any():
            noise = torch.as_tensor(random_actions(self.action_space, self._rng, n), dtype=action.dtype)
            mask = torch.as_tensor(replace).reshape(-1, *([1] * (action.dim() - 1))).to(action.device)
            action = torch.where(mask, noise.to(action.device), action)
        return action, state


class BurstActionPolicy(Policy):
    """A harder perturbation protocol at evaluation: in every episode, ``burst`` consecutive steps starting at a
    step drawn uniformly from ``[0, window)`` play uniform random actions of ``action_space`` instead of
    ``policy``'s (draws seeded by ``seed``; an episode that ends earlier gets fewer). Unlike
    :class:`RandomActionPolicy`, whose lone random steps a policy mostly undoes at the next step, a burst
    carries the agent several steps off its route (into side branches, dead ends), from where it must find
    its way back. ``repeat``: one random action an episode, repeated through its burst (a push in one direction,
    which carries the agent farther than a random walk of the same length). Use it with
    :func:`clonekit.evaluation.rollout` like any policy; it is never deterministic."""

    name: ClassVar[str] = "burst_action_perturbed"

    def __init__(
        self, policy: Policy, action_space: gym.Space[Any], burst: int, window: int, seed: int, repeat: bool = False
    ) -> None:
        super().__init__()
        if burst < 1:
            raise ConfigError(f"burst: expected >= 1 random steps, got {burst}")
        if window < 1:
            raise ConfigError(f"window: expected >= 1 steps, got {window}")
        self.inner = policy
        self.config = policy.config
        self.action_space = action_space
        self.burst = burst
        self.window = window
        self.repeat = repeat
        self._rng = np.random.default_rng(seed)

    def initial_state(self, batch_size: int) -> Any:
        """The inner policy's state, each episode's step count, the step its burst starts and (``repeat``) the
        action its burst repeats."""
        starts = self._rng.integers(0, self.window, size=batch_size)
        pushes = random_actions(self.action_space, self._rng, batch_size) if self.repeat else None
        return self.inner.initial_state(batch_size), np.zeros(batch_size, dtype=np.int64), starts, pushes

    def act(self, obs: dict[str, torch.Tensor], state: Any | None = None) -> tuple[torch.Tensor, Any]:
        if state is None:
            state = self.initial_state(int(obs["obs"].shape[0]))
        inner, steps, starts, pushes = state
        action, inner = self.inner.act(obs, inner)
        replace = (steps >= starts) & (steps < starts + self.burst)
        if replace.any():
            n = action.shape[0]
            drawn = pushes if pushes is not None else random_actions(self.action_space, self._rng, n)
            noise = torch.as_tensor(drawn, dtype=action.dtype)
            mask = torch.as_tensor(replace).reshape(-1, *([1] * (action.dim() - 1))).to(action.device)
            action = torch.where(mask, noise.to(action.device), action)
        return action, (inner, steps + 1, starts, pushes)

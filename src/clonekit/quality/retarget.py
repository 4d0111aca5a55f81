"""Cross-embodiment retargeting: demonstrations of one body turned into demonstrations for another.

HumanPlus-style (Fu et al., 2024): what transfers between bodies is where the *end effector* went, not the joint
motion that took it there. :func:`retarget` maps every episode of a source dataset to the target embodiment
through a kinematic map registered in ``RETARGET_MAPS`` (keyed by source and target env family), and writes a
new dataset whose observations are recomputed in the target embodiment (by stepping the target env with the
mapped actions) and whose actions come from the map. The map uses kinematics only: never a target expert.

Built-in map, ``arm`` -> ``arm`` (:func:`retarget_arm`; e.g. 2-link demonstrations to a 3-link arm):

1. The source's end-effector path ``p_0 .. p_T`` by forward kinematics of the source arm, from the joint angles in
   its observations; the last point (after the last action) from the last angles plus the last action.
2. A start configuration of the target arm whose end effector is at ``p_0``: damped least-squares inverse
   kinematics, iterated from a configuration drawn like the target family's start angles (seeded), so the
   retargeted episodes start from as varied poses as the target's own tasks.
3. Each step ``t``, the least-norm joint change that moves the target's end effector from where it is to
   ``p_{t+1}`` (damped least squares, closed loop, so tracking errors do not add up), as an action in the target's
   range; after the path ends it holds ``p_T``. The target env records the observations, rewards and ends.

Episodes that do not reach the target in the target embodiment (the path left its workspace, or the source
episode failed) are dropped by default and counted. Episode info: ``task_index``, ``source_episode`` and
``path_error`` (the largest distance between the target's end effector and the source path at the same step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset, DatasetWriter, array_stream
from clonekit.data.spaces import space_to_json
from clonekit.envs import resolve_env
from clonekit.envs.arm import (
    START_BEND,
    ArmFamily,
    ArmTask,
    ArmVecEnv,
    angles_from_obs,
    damped_least_squares,
    forward_kinematics,
    joint_action,
)
from clonekit.errors import ConfigError, DatasetError

MAP_DAMPING = 0.05
IK_DAMPING = 0.05
IK_ITERATIONS = 300
IK_TOLERANCE = 1e-6
LOOKAHEAD = 3  # path points searched ahead for the one nearest to the end effector


@dataclass(frozen=True)
class RetargetSummary:
    """What :func:`retarget` wrote: the new dataset, how many source episodes were dropped, and the per-episode
    largest distance ``(N,)`` between the target's end effector and the source path (kept episodes)."""

    dataset: Dataset
    dropped: int
    path_errors: np.ndarray


def source_paths(dataset: Dataset) -> list[np.ndarray]:
    """End-effector paths ``(T + 1, 2)`` of every episode of an ``arm`` dataset (source kinematics only)."""
    _, options = _arm_options(dataset.env.get("id"), dataset.env.get("kwargs", {}), f"{dataset.path}: env")
    lengths = np.asarray(options["link_lengths"])
    links = len(lengths)
    dataset.require_streams(["obs", "action"], "retargeting")
    width = dataset.streams["obs"].shape
    if width != (2 * links + 4,) or dataset.streams["action"].shape != (links,):
        raise DatasetError(
            f"{dataset.path}: obs {width} and action {dataset.streams['action'].shape} do not fit an arm of "
            f"{links} links (expected ({2 * links + 4},) and ({links},))"
        )
    paths = []
    for i in range(dataset.num_episodes):
        episode = dataset.episode(i)
        obs, action = np.asarray(episode["obs"]), np.asarray(episode["action"], dtype=np.float64)
        angles = angles_from_obs(obs, links)
        last = angles[-1:] + np.clip(action[-1:], -1.0, 1.0) * options["max_delta"]
        paths.append(forward_kinematics(np.concatenate([angles, last]), lengths)[:, -1])
    return paths


def inverse_kinematics(points: np.ndarray, lengths: np.ndarray, initial: np.ndarray, damping: float) -> np.ndarray:
    """Joint angles ``(B, L)`` whose end effector is at ``points`` ``(B, 2)`` (as near as it gets), by damped
    least-squares steps from ``initial`` ``(B, L)``; wrapped to [-pi, pi)."""
    angles = initial.astype(np.float64).copy()
    for _ in range(IK_ITERATIONS):
        error = points - forward_kinematics(angles, lengths)[:, -1]
        if np.linalg.norm(error, axis=1).max() < IK_TOLERANCE:
            break
        angles += damped_least_squares(angles, lengths, error, damping)
    return (angles + math.pi) % (2 * math.pi) - math.pi


def retarget_arm(
    source: Dataset,
    out: str | Path,
    target_kwargs: dict[str, Any],
    *,
    seed: int = 0,
    damping: float = MAP_DAMPING,
    drop_failed: bool = True,
    overwrite: bool = False,
) -> RetargetSummary:
    """Retarget an ``arm`` dataset to the arm of ``target_kwargs`` (``arm`` env options); see the module docstring.

    ``seed`` draws the initial guesses of the start configurations' inverse kinematics.
    """
    if damping < 0:
        raise ConfigError(f"damping: expected >= 0, got {damping!r}")
    paths = source_paths(source)
    if not paths:
        raise DatasetError(f"{source.path}: no episodes to retarget")
    family, options = _arm_options("arm", target_kwargs, "--env-kwargs")
    lengths = np.asarray(options["link_lengths"])
    reach = float(lengths.sum())
    rng = np.random.default_rng(seed)
    guess = np.concatenate(
        [
            rng.uniform(-math.pi, math.pi, (len(paths), 1)),
            rng.uniform(-START_BEND, START_BEND, (len(paths), len(lengths) - 1)),
        ],
        axis=1,
    )
    starts = inverse_kinematics(np.stack([p[0] for p in paths]), lengths, guess, IK_DAMPING)
    targets = [tuple(float(v) for v in np.asarray(source.episode(i)["obs"])[0, -4:-2]) for i in range(len(paths))]
    tasks = [ArmTask(tuple(float(a) for a in q), (t[0], t[1])) for q, t in zip(starts, targets, strict=True)]
    episodes, errors = _play_map(ArmVecEnv(tasks, **options), paths, damping)
    kept = [i for i, ep in enumerate(episodes) if ep["reward"].sum() > 0 or not drop_failed]

    obs_space, act_space = family.spaces(**target_kwargs)
    assert obs_space.shape is not None and act_space.shape is not None
    streams = [
        array_stream("obs", "float32", obs_space.shape, "sin q, cos q, target (x, y), end effector (x, y)"),
        array_stream("action", "float32", act_space.shape, "retargeted joint velocities (fraction of max_delta)"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
    ]
    env = {"id": family.name, "kwargs": dict(target_kwargs), "tasks": [family.task_to_json(tasks[i]) for i in kept]}
    extra = {
        "retarget": {
            "source": str(source.path),
            "source_fingerprint": source.fingerprint,
            "source_env": {"id": source.env.get("id"), "kwargs": source.env.get("kwargs", {})},
            "map": "end-effector path, damped least squares",
            "damping": damping,
            "seed": seed,
            "episodes": len(paths),
            "dropped": len(paths) - len(kept),
            "reach": reach,
        }
    }
    writer = DatasetWriter(
        out,
        streams,
        spaces={"observation": space_to_json(obs_space), "action": space_to_json(act_space)},
        env=env,
        episode_info=("task_index", "source_episode", "path_error"),
        extra=extra,
        overwrite=overwrite,
    )
    with writer:
        for index, i in enumerate(kept):
            writer.add_episode(episodes[i], {"task_index": index, "source_episode": i, "path_error": float(errors[i])})
        dataset = writer.close()
    return RetargetSummary(dataset, len(paths) - len(kept), errors[kept])


def _play_map(
    vec: ArmVecEnv, paths: list[np.ndarray], damping: float
) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Play the map on every slot of ``vec`` (slot ``i`` follows ``paths[i]``): the episodes' streams and each
    episode's largest end-effector distance ``(B,)`` from its path (the polyline through the path's points)."""
    ends = np.array([len(p) - 1 for p in paths])
    longest = int(ends.max()) + 1
    padded = np.zeros((vec.num_envs, longest, 2))  # each path, held at its last point
    for slot, path in enumerate(paths):
        padded[slot, : len(path)], padded[slot, len(path) :] = path, path[-1]
    rows = np.arange(vec.num_envs)
    progress = np.zeros(vec.num_envs, dtype=np.int64)
    obs = vec.reset()
    steps: dict[str, list[np.ndarray]] = {}
    active = np.ones(vec.num_envs, dtype=bool)
    length = np.zeros(vec.num_envs, dtype=np.int64)
    errors = np.zeros(vec.num_envs)
    while active.any():
        ee = vec.end_effector()
        progress = _advance(padded, ends, progress, ee)
        waypoint = padded[rows, np.minimum(progress + 1, ends)]
        delta = damped_least_squares(vec.angles, vec.lengths, waypoint - ee, damping)
        action = joint_action(delta, vec.max_delta).astype(np.float32)
        record = {"obs": obs, "action": action}
        obs, reward, terminated, truncated = vec.step(action)
        record |= {"reward": reward, "terminated": terminated, "truncated": truncated}
        for name, value in record.items():
            steps.setdefault(name, []).append(value)
        length += active
        errors = np.where(active, np.maximum(errors, _polyline_distance(padded, vec.end_effector())), errors)
        active &= ~(terminated | truncated)
    stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}
    return [{name: v[slot, : length[slot]] for name, v in stacked.items()} for slot in rows], errors


def _advance(paths: np.ndarray, ends: np.ndarray, progress: np.ndarray, ee: np.ndarray) -> np.ndarray:
    """New path indices ``(B,)``: the path point nearest to ``ee`` among the next ``LOOKAHEAD`` from ``progress``.

    Following the path by progress rather than by time lets a slower arm take more steps than the source did
    without cutting corners to catch up; the index never goes back, so the path is followed in order.
    """
    window = progress[:, None] + np.arange(LOOKAHEAD + 1)[None]  # (B, W)
    window = np.minimum(window, ends[:, None])
    points = np.take_along_axis(paths, window[..., None].repeat(2, axis=-1), axis=1)  # (B, W, 2)
    nearest = np.linalg.norm(points - ee[:, None], axis=-1).argmin(axis=1)
    return window[np.arange(len(ee)), nearest]


def _polyline_distance(paths: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(B,)`` distance of each point ``(B, 2)`` to its path's polyline ``(B, T, 2)``, ``T >= 2``."""
    start, stop = paths[:, :-1], paths[:, 1:]
    segment = stop - start
    along = np.einsum("btk,btk->bt", points[:, None] - start, segment)
    along = np.clip(along / np.maximum(np.einsum("btk,btk->bt", segment, segment), 1e-12), 0.0, 1.0)
    nearest = start + along[..., None] * segment
    return np.linalg.norm(nearest - points[:, None], axis=-1).min(axis=1)


def _arm_options(env_id: Any, kwargs: Any, where: str) -> tuple[ArmFamily, dict[str, Any]]:
    family, options = resolve_env(str(env_id), kwargs if isinstance(kwargs, dict) else {})
    if not isinstance(family, ArmFamily):
        raise ConfigError(f"{where}: expected env 'arm', got {env_id!r}")
    return family, family.options(options)


# (source env family, target env family) -> map(source, out, target_kwargs, seed=..., overwrite=...)
RETARGET_MAPS: dict[tuple[str, str], Callable[..., RetargetSummary]] = {("arm", "arm"): retarget_arm}


def retarget(
    source: Dataset, to: str, target_kwargs: dict[str, Any], out: str | Path, *, seed: int = 0, overwrite: bool = False
) -> RetargetSummary:
    """Retarget ``source`` to env family ``to`` with options ``target_kwargs`` through the registered map (one-line
    ``ConfigError`` when none fits)."""
    key = (str(source.env.get("id")), to)
    if key not in RETARGET_MAPS:
        known = ", ".join(f"{a} -> {b}" for a, b in RETARGET_MAPS)
        raise ConfigError(f"retarget: no map from env {key[0]!r} to {to!r}; known maps: {known}")
    return RETARGET_MAPS[key](source, out, target_kwargs, seed=seed, overwrite=overwrite)


__all__ = [
    "RETARGET_MAPS",
    "RetargetSummary",
    "inverse_kinematics",
    "retarget",
    "retarget_arm",
    "source_paths",
]

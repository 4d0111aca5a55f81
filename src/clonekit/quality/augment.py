"""Guided augmentation (GuDA-style): transformed copies of demonstration segments that a guide accepts.

clonekit cuts each episode into segments (``segment_length`` steps; 0: the whole episode), applies every named
transform to every segment, and asks the **guide** whether the transformed segment is plausible and useful;
only accepted segments are written, each as one episode whose ``source`` stream reads ``augmented`` (see
:class:`clonekit.quality.curate.AddedEpisodes`). A segment cut from inside an episode ends ``truncated``.

Transforms (``TRANSFORMS``, one explicit dict; add your own with :func:`register_transform`):

* grid transforms ``rot90``, ``rot180``, ``rot270``, ``flip-lr``, ``flip-ud``: for grid observations
  ``(C, H, W)`` whose env family names its four actions ``up, down, left, right`` (the maze): the grid is
  rotated or mirrored and each action mapped to the one that moves the same way in the transformed grid, so a
  shortest path stays a shortest path.
* continuous transforms ``obs-noise:S`` (Gaussian noise of standard deviation ``S`` on float observations),
  ``action-noise:S`` (on Box actions, clipped to the action space) and ``time-shift:K`` (the segment starts
  ``K`` steps later).

Guides: ``py:module:attr`` names a callable ``guide(segment) -> bool`` (``segment``: stream name -> ``(T, ...)``
array or list of str); or a comma-separated list of built-in rules, all of which must accept
(``GUIDE_RULES``): ``in-bounds`` (observations and actions inside their spaces), ``success`` (the segment ends
in the goal), ``grid-shortest-path`` (grid data: every move brings the agent one cell closer to the goal shown in
the observation, and the next observation shows it there).

Streams a transform does not map (e.g. a BFS ``procedure``, whose labels name directions) are blank in the
augmented episodes (zeros, empty text) and listed in the log (``blanked_streams``). Augmented episodes keep the
episode info of the episode they came from (so ``task_index`` names the task a rotated episode was made from,
not the rotated maze) and add ``augmented_from`` and ``transform``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from clonekit.data import Dataset
from clonekit.data.formats.source import python_scalar
from clonekit.envs import get_env_family
from clonekit.envs.maze import AGENT, GOAL, MOVES, WALL, MazeTask, bfs_from_goal
from clonekit.errors import ConfigError
from clonekit.quality.curate import SOURCE_STREAM, WEIGHT_STREAM, AddedEpisodes, Episode, blank_steps
from clonekit.quality.pyspec import load_callable
from clonekit.seeding import derive_seed

AUGMENTED = "augmented"
REQUIRED = ("obs", "action", "reward", "terminated", "truncated")
Guide = Callable[[Episode], bool]
GRID_ACTIONS = ("up", "down", "left", "right")
# Cell maps (row, col, height, width) -> (row, col) and array maps over the last two axes of each grid transform.
CellMap = Callable[[int, int, int, int], tuple[int, int]]
_GRID: dict[str, tuple[Callable[[np.ndarray], np.ndarray], CellMap]] = {
    "rot90": (lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda r, c, h, w: (w - 1 - c, r)),
    "rot180": (lambda a: np.rot90(a, 2, axes=(-2, -1)), lambda r, c, h, w: (h - 1 - r, w - 1 - c)),
    "rot270": (lambda a: np.rot90(a, 3, axes=(-2, -1)), lambda r, c, h, w: (c, h - 1 - r)),
    "flip-lr": (lambda a: a[..., ::-1], lambda r, c, h, w: (r, w - 1 - c)),
    "flip-ud": (lambda a: a[..., ::-1, :], lambda r, c, h, w: (h - 1 - r, c)),
}


@dataclass(frozen=True)
class Transform:
    """One augmentation.

    Args:
        name: As given (``rot90``, ``obs-noise:0.05``).
        apply: ``(segment, rng) -> transformed segment`` (its streams ``obs``, ``action``, ``reward``,
            ``terminated``, ``truncated`` and those in ``maps``), or None when it does not apply to the segment.
        maps: Streams besides the required ones it transforms (the others are blanked).
        check: ``dataset -> reason it cannot transform this dataset``, or None when it can.
    """

    name: str
    apply: Callable[[Episode, np.random.Generator], Episode | None]
    maps: tuple[str, ...] = ()
    check: Callable[[Dataset], str | None] = lambda dataset: None


def grid_action_map(name: str, height: int, width: int) -> np.ndarray:
    """``(4,)`` int64: for each grid action, the action that moves the same way after grid transform ``name``."""
    _, cell = _GRID[name]
    r, c = height // 2, width // 2
    mapped = np.zeros(len(MOVES), dtype=np.int64)
    for a, (dr, dc) in enumerate(MOVES.tolist()):
        (r0, c0), (r1, c1) = cell(r, c, height, width), cell(r + dr, c + dc, height, width)
        mapped[a] = next(b for b, move in enumerate(MOVES.tolist()) if move == [r1 - r0, c1 - c0])
    return mapped


def _grid_transform(name: str) -> Transform:
    array_map, _ = _GRID[name]

    def apply(segment: Episode, rng: np.random.Generator) -> Episode:
        obs = np.asarray(segment["obs"])
        h, w = obs.shape[-2:]
        mapping = grid_action_map(name, h, w)
        return {
            **{n: np.asarray(segment[n]) for n in ("reward", "terminated", "truncated")},
            "obs": np.ascontiguousarray(array_map(obs)),
            "action": mapping[np.asarray(segment["action"], dtype=np.int64)],
        }

    def check(dataset: Dataset) -> str | None:
        obs, action = dataset.space("observation"), dataset.space("action")
        family = get_env_family(str(dataset.env.get("id", "")))
        if tuple(getattr(family, "action_names", ())) != GRID_ACTIONS or not isinstance(action, gym.spaces.Discrete):
            return f"grid transforms need a family whose actions are {', '.join(GRID_ACTIONS)}"
        shape = obs.shape or ()
        if len(shape) != 3 or (name in ("rot90", "rot270") and shape[1] != shape[2]):
            return f"expected square grid observations (C, H, W), found {shape}"
        return None

    return Transform(name, apply, (), check)


def _noise_transform(name: str, stream: str, scale: float) -> Transform:
    def apply(segment: Episode, rng: np.random.Generator) -> Episode:
        out = {n: np.asarray(segment[n]) for n in REQUIRED}
        values = out[stream].astype(np.float64) + rng.normal(0.0, scale, size=out[stream].shape)
        out[stream] = values.astype(out[stream].dtype)
        return out

    def check(dataset: Dataset) -> str | None:
        space = dataset.space("observation" if stream == "obs" else "action")
        if not isinstance(space, gym.spaces.Box) or not np.issubdtype(space.dtype, np.floating):
            return f"{name} needs float {stream} (a Box space), found {space}"
        return None

    return Transform(name, apply, (), check)


def _clipped_action_noise(name: str, scale: float) -> Transform:
    noise = _noise_transform(name, "action", scale)
    state: dict[str, Any] = {}

    def apply(segment: Episode, rng: np.random.Generator) -> Episode | None:
        out = noise.apply(segment, rng)
        if out is not None and "space" in state:
            out["action"] = np.clip(out["action"], state["space"].low, state["space"].high)
        return out

    def check(dataset: Dataset) -> str | None:
        state["space"] = dataset.space("action")
        return noise.check(dataset)

    return Transform(name, apply, (), check)


def _time_shift(name: str, shift: int) -> Transform:
    def apply(segment: Episode, rng: np.random.Generator) -> Episode | None:
        if len(segment["action"]) <= shift:
            return None
        return {n: np.asarray(segment[n])[shift:] for n in REQUIRED}

    return Transform(name, apply)


def _number(name: str, param: str | None, kind: type, low: float) -> Any:
    try:
        value = kind(param)
    except (TypeError, ValueError):
        value = None
    if value is None or not value >= low or (kind is float and not np.isfinite(value)):
        raise ConfigError(f"--augment {name}: expected {name}:{'S' if kind is float else 'K'} with a number >= {low}")
    return value


TransformFactory = Callable[[str, str | None], Transform]
TRANSFORMS: dict[str, TransformFactory] = {
    **{grid: (lambda text, param: _grid_transform(text)) for grid in _GRID},
    "obs-noise": lambda text, param: _noise_transform(text, "obs", _number("obs-noise", param, float, 0.0)),
    "action-noise": lambda text, param: _clipped_action_noise(text, _number("action-noise", param, float, 0.0)),
    "time-shift": lambda text, param: _time_shift(text, _number("time-shift", param, int, 1)),
}


def register_transform(name: str, factory: TransformFactory) -> None:
    """Add transform ``name``: ``factory(text, param)`` builds it from ``--augment name[:param]``."""
    if not name or ":" in name or "," in name:
        raise ConfigError(f"transform name: expected a non-empty name without ':' or ',', got {name!r}")
    TRANSFORMS[name] = factory


def make_transform(text: str) -> Transform:
    """The transform ``text`` = ``name`` or ``name:param`` names (see the module docstring)."""
    name, sep, param = text.partition(":")
    if name not in TRANSFORMS:
        raise ConfigError(f"--augment: unknown transform {text!r}; expected one of {', '.join(sorted(TRANSFORMS))}")
    grid = name in _GRID
    if grid and sep:
        raise ConfigError(f"--augment {text}: {name} takes no parameter")
    return TRANSFORMS[name](text, param if sep else None)


def _in_bounds(dataset: Dataset) -> Guide:
    obs_space, action_space = dataset.space("observation"), dataset.space("action")

    def guide(segment: Episode) -> bool:
        return all(obs_space.contains(o) for o in np.asarray(segment["obs"])) and all(
            action_space.contains(a if np.ndim(a) else int(a)) for a in np.asarray(segment["action"])
        )

    return guide


def _success(dataset: Dataset) -> Guide:
    return lambda segment: bool(np.asarray(segment["terminated"])[-1] and np.asarray(segment["reward"])[-1] > 0)


def _grid_shortest_path(dataset: Dataset) -> Guide:
    cache: dict[bytes, np.ndarray] = {}

    def distance_map(view: np.ndarray) -> np.ndarray:
        key = view[WALL].tobytes() + view[GOAL].tobytes()
        if key not in cache:
            goal = np.unravel_index(int(view[GOAL].argmax()), view[GOAL].shape)
            task = MazeTask(-1, view[WALL] > 0, (int(goal[0]), int(goal[1])))
            cache[key] = bfs_from_goal(task)[0]
        return cache[key]

    def guide(segment: Episode) -> bool:
        obs, actions = np.asarray(segment["obs"]), np.asarray(segment["action"], dtype=np.int64)
        h, w = obs.shape[-2:]
        for t, (view, action) in enumerate(zip(obs, actions, strict=True)):
            r, c = divmod(int(view[AGENT].argmax()), w)
            nr, nc = r + int(MOVES[action][0]), c + int(MOVES[action][1])
            distance = distance_map(view)
            if not (0 <= nr < h and 0 <= nc < w) or not 0 <= distance[nr, nc] < distance[r, c]:
                return False
            if t + 1 < len(obs) and int(obs[t + 1][AGENT].argmax()) != nr * w + nc:
                return False
        return True

    return guide


GUIDE_RULES: dict[str, Callable[[Dataset], Guide]] = {
    "in-bounds": _in_bounds,
    "success": _success,
    "grid-shortest-path": _grid_shortest_path,
}


def make_guide(spec: str, dataset: Dataset) -> Guide:
    """The guide ``spec`` names for ``dataset``: ``py:module:attr`` or built-in rules ``rule[,rule...]``."""
    if spec.startswith("py:"):
        user = load_callable(spec, "--guide")
        return lambda segment: bool(user(segment))
    names = [n.strip() for n in spec.split(",")]
    unknown = [n for n in names if n not in GUIDE_RULES]
    if not spec.strip() or unknown:
        raise ConfigError(
            f"--guide: expected py:module:attr or rules from {', '.join(GUIDE_RULES)} (comma-separated), got {spec!r}"
        )
    rules = [GUIDE_RULES[n](dataset) for n in names]
    return lambda segment: all(rule(segment) for rule in rules)


def _segments(length: int, segment_length: int) -> list[tuple[int, int]]:
    if segment_length <= 0 or segment_length >= length:
        return [(0, length)]
    return [(a, min(a + segment_length, length)) for a in range(0, length, segment_length)]


def augmented_episodes(
    dataset: Dataset,
    transforms: Sequence[str | Transform],
    guide: str | Guide,
    *,
    episodes: Sequence[int] | None = None,
    segment_length: int = 0,
    seed: int = 0,
) -> AddedEpisodes:
    """Augmented episodes of ``episodes`` of ``dataset`` (default: all) that ``guide`` accepts, for
    :func:`clonekit.quality.curate.curate`'s ``added`` (see the module docstring). The log counts candidates,
    accepted and rejected segments per transform."""
    if not transforms:
        raise ConfigError("--augment: give at least one transform")
    if segment_length < 0:
        raise ConfigError(f"--segment-length: expected >= 0 (0: whole episodes), got {segment_length}")
    made = [make_transform(t) if isinstance(t, str) else t for t in transforms]
    for transform in made:
        reason = transform.check(dataset)
        if reason is not None:
            raise ConfigError(f"--augment {transform.name}: cannot transform {dataset.path}: {reason}")
    judge = make_guide(guide, dataset) if isinstance(guide, str) else guide
    info_names = list(dataset.meta.get("episode_info", []))
    own = (SOURCE_STREAM.name, WEIGHT_STREAM.name)
    added: list[tuple[Episode, dict[str, Any]]] = []
    counts = {t.name: {"candidates": 0, "accepted": 0, "rejected": 0, "not_applicable": 0} for t in made}
    blanked: set[str] = set()
    for k in range(dataset.num_episodes) if episodes is None else episodes:
        recorded = dataset.episode(int(k))
        info = {n: python_scalar(f"{dataset.path}: episode {k}", dataset.episode_info(n)[k]) for n in info_names}
        for a, b in _segments(len(recorded["action"]), segment_length):
            segment = {n: v[a:b] for n, v in recorded.items() if n not in own}
            if b < len(recorded["action"]):  # a piece cut from inside the episode ends there, unfinished
                truncated = np.asarray(segment["truncated"]).copy()
                truncated[-1] = True
                segment["truncated"] = truncated
            for transform in made:
                rng = np.random.default_rng(derive_seed(seed, f"augment:{k}:{a}:{transform.name}"))
                out = transform.apply(segment, rng)
                tally = counts[transform.name]
                if out is None:
                    tally["not_applicable"] += 1
                    continue
                tally["candidates"] += 1
                length = len(out["action"])
                for name, spec in dataset.streams.items():
                    if name not in out and name not in own:
                        out[name] = blank_steps(spec, length)
                        blanked.add(name)
                if not judge(out):
                    tally["rejected"] += 1
                    continue
                tally["accepted"] += 1
                out[SOURCE_STREAM.name] = [AUGMENTED] * length
                out[WEIGHT_STREAM.name] = np.ones(length, dtype=np.float32)
                added.append((out, {**info, "augmented_from": int(k), "transform": transform.name}))
    log = {
        "transforms": [t.name for t in made],
        "guide": guide if isinstance(guide, str) else getattr(guide, "__name__", "guide"),
        "segment_length": segment_length,
        "counts": counts,
        "blanked_streams": sorted(blanked),
    }
    names = ",".join(t.name for t in made)
    return AddedEpisodes(f"augment:{names}", added, info_defaults={"augmented_from": -1, "transform": ""}, log=log)

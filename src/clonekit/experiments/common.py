"""What every experiment does the same way: its torch thread count, the head of ``results.json`` and the tail
of ``report.md``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clonekit import __version__
from clonekit.checkpoint import load_policy
from clonekit.config import check, config_to_json
from clonekit.data import Dataset, StreamSpec, array_stream
from clonekit.errors import ConfigError, DatasetError
from clonekit.evaluation.stats import format_metric, summarize
from clonekit.experts.collect import collect
from clonekit.policies import POLICIES, Policy
from clonekit.quality.curate import Filter, curate
from clonekit.quality.outcomes import episode_outcomes
from clonekit.train import TrainConfig, train


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads; the caller's count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def head_policies(config: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """The four continuous heads the head-comparison experiments train (keys ``mlp``, ``gmm``, ``diffusion``,
    ``diffusion_chunked``) as ``key -> (gradient steps, continuous_bc config overrides)``, from a config with
    ``hidden_sizes``, ``mlp_steps``, ``gmm_steps``, ``diffusion_steps``, ``denoising_steps``, ``chunk`` and
    ``execute_steps``."""
    common: dict[str, Any] = {"hidden_sizes": list(config.hidden_sizes)}
    diffusion = {**common, "head": "diffusion", "diffusion_steps": config.denoising_steps}
    return {
        "mlp": (config.mlp_steps, {**common, "head": "mse"}),
        "gmm": (config.gmm_steps, {**common, "head": "gmm"}),
        "diffusion": (config.diffusion_steps, diffusion),
        "diffusion_chunked": (
            config.diffusion_steps,
            {**diffusion, "chunk": config.chunk, "execute_steps": config.execute_steps},
        ),
    }


def train_head(dataset: Any, out: Path, config: Any, seed: int, name: str, show_progress: bool) -> Policy:
    """Train (or resume) head ``name`` of :func:`head_policies` as ``continuous_bc`` in ``out/runs/NAME``, with
    the config's ``batch_size`` and ``lr`` (checkpoints every 1,000 steps)."""
    steps, overrides = head_policies(config)[name]
    train_config = TrainConfig(
        steps=steps, batch_size=config.batch_size, lr=config.lr, seed=seed, checkpoint_every=1000
    )
    return train(
        "continuous_bc",
        dataset,
        out / "runs" / name,
        train_config,
        policy_overrides=overrides,
        resume=True,
        same_settings=True,
        show_progress=show_progress,
    )


def results_head(name: str, seed: int, quick: bool, config: Any, torch_threads: int) -> dict[str, Any]:
    """The keys every ``results.json`` starts with (``metrics`` comes next, then the experiment's own)."""
    return {
        "experiment": name,
        "clonekit_version": __version__,
        "seed": seed,
        "quick": quick,
        "config": {**config_to_json(config), "torch_threads": torch_threads},
    }


def report_tail(results: dict[str, Any], plots: list[str]) -> list[str]:
    """The last lines of every ``report.md``: the plots, then the settings as JSON."""
    shown = [f"![{p}]({p})" for p in plots]
    return ["", *shown, "", "Settings:", "", "```json", json.dumps(results["config"], indent=2), "```", ""]


def check_policy_keys(policies: Sequence[str], keys: Sequence[str]) -> None:
    """Config check of an experiment's ``policies`` field: one or more distinct keys among ``keys``."""
    check(
        len(policies) >= 1 and all(k in keys for k in policies) and len(set(policies)) == len(policies),
        "policies",
        f"distinct keys among {', '.join(keys)}",
        policies,
    )


def require_registered(policies: Sequence[str], policy_of_key: Mapping[str, Sequence[Any]]) -> None:
    """A one-line ``ConfigError`` naming every key in ``policies`` whose policy (``policy_of_key[key][0]``) is not
    registered, with the ``--set policies=...`` that runs the others."""
    missing = [k for k in policies if policy_of_key[k][0] not in POLICIES]
    if missing:
        names = ", ".join(f"{k} (policy {policy_of_key[k][0]!r})" for k in missing)
        keep = ", ".join(f'"{k}"' for k in policies if k not in missing)
        raise ConfigError(f"policies: {names} not registered; run the others with --set policies='[{keep}]'")


def behaviour_composition(mixed: Dataset, behaviours: Sequence[str], seed: int, log: Any) -> dict[str, dict[str, Any]]:
    """Per behaviour of a mixed dataset (episode info ``behaviour``): its episodes, steps and the success of its
    episodes (an interval, ``None`` without episodes); each line is also logged."""
    outcomes = episode_outcomes(mixed)
    behaviour = np.asarray(mixed.episode_info("behaviour"))
    lengths = np.asarray(mixed.episode_lengths)
    composition: dict[str, dict[str, Any]] = {
        kind: {
            "episodes": int((behaviour == kind).sum()),
            "steps": int(lengths[behaviour == kind].sum()),
            "success": summarize(outcomes.success[behaviour == kind], seed) if (behaviour == kind).any() else None,
        }
        for kind in behaviours
    }
    for kind, facts in composition.items():
        rate = format_metric(facts["success"]) if facts["success"] else "-"
        log(f"{kind:7s} {facts['episodes']:4d} episodes, {facts['steps']:6d} steps, success {rate}")
    return composition


def train_offline_key(
    config: Any,
    key: str,
    policy: str,
    data: Dataset,
    run: Path,
    seed: int,
    overrides: dict[str, Any],
    show_progress: bool,
) -> Policy:
    """Train (or resume, or reuse) one policy key of the offline experiments and load it: ``config.steps`` steps
    of ``config.batch_size`` (``dt_steps`` of ``dt_batch_size`` for the key ``dt``), ``config.lr``, every episode
    for training, one checkpoint kept."""
    steps, batch_size = (config.dt_steps, config.dt_batch_size) if key == "dt" else (config.steps, config.batch_size)
    train_config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=config.lr,
        seed=seed,
        checkpoint_every=max(steps // 2, 1),
        keep_checkpoints=1,
        tensorboard=False,
        val_fraction=0.0,
    )
    train(policy, data, run, train_config, overrides, resume=True, same_settings=True, show_progress=show_progress)
    return load_policy(run)


def successful_episodes(mixed: Dataset, path: Path) -> Dataset:
    """The successful episodes of ``mixed`` as a curated dataset at ``path`` (opened as it is when it exists)."""

    return Dataset.open(path) if path.exists() else curate(mixed, path, [Filter("success")])


def play_episodes(
    vec: Any, obs: np.ndarray, decide: Callable[[np.ndarray], dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Play one episode per slot of the batched env ``vec`` (just reset, observing ``obs``) until every slot ended.

    Each step ``decide(obs)`` gives the step's ``action`` (and any other per-step streams, one row per slot) for
    every slot. Returns one dict per slot: its ``obs``, ``decide``'s streams, ``reward``, ``terminated`` and
    ``truncated``, cut at the slot's last step.
    """
    steps: dict[str, list[np.ndarray]] = {}
    active = np.ones(len(obs), dtype=bool)
    length = np.zeros(len(obs), dtype=np.int64)
    while active.any():
        record = {"obs": obs, **decide(obs)}
        obs, reward, terminated, truncated = vec.step(record["action"])
        record |= {"reward": reward, "terminated": terminated, "truncated": truncated}
        for name, value in record.items():
            steps.setdefault(name, []).append(value)
        length += active
        active &= ~(terminated | truncated)
    stacked = {name: np.stack(values, axis=1) for name, values in steps.items()}  # (B, T, ...)
    return [{name: values[slot, : length[slot]] for name, values in stacked.items()} for slot in range(len(obs))]


def avoiding_step_streams(*extra: StreamSpec) -> list[StreamSpec]:
    """The streams of an Avoiding episode written step by step (state observations), then ``extra``."""
    return [
        array_stream("obs", "float32", (2,), "agent position (x, y)"),
        array_stream("action", "float32", (2,), "velocity as a fraction of the largest step"),
        array_stream("reward", "float32", ()),
        array_stream("terminated", "bool", ()),
        array_stream("truncated", "bool", ()),
        *extra,
    ]


def exact_metric(value: float, method: str = "count") -> dict[str, Any]:
    """A metric cell of a value known exactly (a count, an analytic cost): its interval is the value itself."""
    value = float(value)
    return {"mean": value, "ci95": [value, value], "n": 1, "method": method}


def split_success_table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows ``(policy, success per split...)`` of formatted success metrics, splits in results order (an
    experiment spec's ``table`` for experiments whose every split has a ``success`` metric)."""
    return [
        (key, *(format_metric(m["success"]) for m in splits.values())) for key, splits in results["metrics"].items()
    ]


def collected_once(
    path: Path,
    env: str,
    expert: str,
    *,
    seed: int,
    episodes: int,
    num_tasks: int,
    env_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = True,
    **collect_options: Any,
) -> Dataset:
    """``expert``'s demonstrations at ``path``: collected there on the first call (``collect`` with these settings
    and ``collect_options``), reopened on a rerun (resume). A dataset at ``path`` made with another seed, task count,
    episode count, env option of ``env_kwargs`` or expert options (``collect_options["expert_kwargs"]``) is refused
    (``DatasetError``: use a fresh ``--out``)."""
    kwargs = dict(env_kwargs or {})
    if path.exists():
        dataset = Dataset.open(path)
        meta = dataset.env
        if (
            meta.get("seed") != seed
            or len(meta.get("tasks", [])) != num_tasks
            or dataset.num_episodes != episodes
            or any(meta.get("kwargs", {}).get(k) != v for k, v in kwargs.items())
            or meta.get("expert_kwargs", {}) != dict(collect_options.get("expert_kwargs") or {})
        ):
            raise DatasetError(f"{path}: exists but was collected with other settings; use a fresh --out")
        return dataset
    return collect(
        env,
        expert,
        episodes=episodes,
        seed=seed,
        out=path,
        num_tasks=num_tasks,
        env_kwargs=kwargs or None,
        show_progress=show_progress,
        **collect_options,
    )

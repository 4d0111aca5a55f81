"""Quality measures with a trained policy in the loop: how far a policy's actions are from a dataset's, and how
compatible each demonstrator is with the others ("Eliciting Compatible Demonstrations for Multi-Human
Imitation Learning": a demonstration helps when a policy trained on the others already predicts it, hurts when
its style conflicts with theirs).

* :func:`policy_divergence`: per step of a dataset, the policy's action against the recorded one, with the
  policy fed the recorded observations (and its own memory, for a policy with state, reset at each episode's
  start). Discrete actions: ``mismatch`` (1 where the policy's action differs), and ``nll``, the negative log
  likelihood of the recorded action under the policy's logits where the policy exposes them
  (:meth:`~clonekit.policies.base.Policy.action_logits`). Continuous: ``distance``, the L2 distance between the
  two actions in units of the dataset's per-dimension action standard deviation (sampling heads draw their
  noise from a seeded generator, so a call repeats).
* :func:`divergence_summary`: its means overall, per demonstrator (``demonstrator`` stream) and the episodes the
  policy disagrees with most.
* :func:`compatibility`: leave one demonstrator out. For each demonstrator ``d`` a policy is trained on the other
  demonstrators' episodes, less a held-out share of each; ``compatibility = divergence on the others' held-out
  episodes - divergence on d's episodes``. About 0: the others' policy predicts ``d`` as well as it predicts
  fresh data of their own (compatible); clearly negative: ``d`` acts where the others would not (an
  incompatible style, or noise). It trains one policy per demonstrator, so it costs that many short runs;
  ``clonekit inspect DATA --quality`` reports the cheap proxy ``agreement_with_others`` without training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from clonekit.data import Dataset
from clonekit.errors import ConfigError
from clonekit.policies import Policy
from clonekit.quality.outcomes import episode_outcomes
from clonekit.quality.subset import write_subset

# Streams besides "obs" that a policy reads when it acts (the env supplies them at rollout time).
ACT_INPUTS = ("goal",)


@dataclass(frozen=True)
class Divergence:
    """Per-step divergence of a policy from a dataset (``(num_steps,)`` float64 arrays).

    ``kind`` is ``"mismatch"`` (discrete actions) or ``"distance"`` (continuous, in action standard deviations);
    ``nll`` is set for discrete actions when the policy exposes its logits.
    """

    per_step: np.ndarray
    kind: str
    nll: np.ndarray | None = None


def _inputs(policy: Policy, dataset: Dataset, rows: np.ndarray) -> dict[str, torch.Tensor]:
    inputs = {"obs": torch.as_tensor(np.asarray(dataset.column("obs"))[rows])}
    for name in ACT_INPUTS:
        if name in policy.required_streams and name in dataset.streams:
            inputs[name] = torch.as_tensor(np.asarray(dataset.column(name))[rows])
    return inputs


def _act(policy: Policy, inputs: dict[str, torch.Tensor], state: Any, discrete: bool) -> tuple[Any, Any, Any]:
    """``(action, logits or None, next state)`` of one ``act`` call."""
    if discrete:
        scored = policy.action_logits(inputs, state)
        if scored is not None:
            logits, next_state = scored
            return logits.argmax(dim=-1), logits, next_state
    action, next_state = policy.act(inputs, state)
    return action, None, next_state


@torch.no_grad()
def policy_divergence(policy: Policy, dataset: Dataset, batch_size: int = 4096, seed: int = 0) -> Divergence:
    """The divergence of ``policy`` from ``dataset``'s actions at every step (see the module docstring).

    The policy is put in eval mode; the dataset is only read. Stateless policies are scored in batches of
    ``batch_size`` steps; a policy with state plays every episode from its first step, up to ``batch_size``
    episodes side by side.
    """
    dataset.require_streams(("obs", "action"), "policy divergence")
    for name in ACT_INPUTS:
        if name in policy.required_streams:
            dataset.require_streams((name,), f"policy {policy.name!r}")
    policy.eval()
    actions = np.asarray(dataset.column("action"))
    discrete = actions.dtype.kind in "biu"
    chosen = np.zeros(actions.shape, dtype=np.float64 if not discrete else np.int64)
    nll = np.full(len(actions), np.nan) if discrete else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if policy.initial_state(1) is None:
            for start in range(0, len(actions), batch_size):
                rows = np.arange(start, min(start + batch_size, len(actions)))
                action, logits, _ = _act(policy, _inputs(policy, dataset, rows), None, discrete)
                chosen[rows] = action.cpu().numpy().reshape(chosen[rows].shape)
                if logits is not None and nll is not None:
                    recorded = torch.as_tensor(actions[rows]).long().reshape(-1)
                    nll[rows] = F.cross_entropy(logits.float(), recorded, reduction="none").cpu().numpy()
        else:
            starts, lengths = dataset.episode_starts, dataset.episode_lengths
            for first in range(0, len(starts), batch_size):
                group = np.arange(first, min(first + batch_size, len(starts)))
                state = policy.initial_state(len(group))
                for t in range(int(lengths[group].max())):
                    # Episodes that have ended repeat their last step (their results are not kept).
                    rows = starts[group] + np.minimum(t, lengths[group] - 1)
                    action, logits, state = _act(policy, _inputs(policy, dataset, rows), state, discrete)
                    live = t < lengths[group]
                    chosen[rows[live]] = action.cpu().numpy().reshape((len(group), *chosen.shape[1:]))[live]
                    if logits is not None and nll is not None:
                        recorded = torch.as_tensor(actions[rows]).long().reshape(-1)
                        step_nll = F.cross_entropy(logits.float(), recorded, reduction="none").cpu().numpy()
                        nll[rows[live]] = step_nll[live]
    if discrete:
        mismatch = (chosen.reshape(len(actions), -1) != actions.reshape(len(actions), -1)).any(axis=1)
        has_nll = nll is not None and not np.isnan(nll).any()
        return Divergence(mismatch.astype(np.float64), "mismatch", nll if has_nll else None)
    flat = actions.reshape(len(actions), -1).astype(np.float64)
    scale = flat.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    distance = np.linalg.norm((chosen.reshape(len(actions), -1) - flat) / scale, axis=1)
    return Divergence(distance, "distance")


def divergence_summary(dataset: Dataset, divergence: Divergence, worst: int = 5) -> dict[str, Any]:
    """Mean divergence overall, per demonstrator, and the ``worst`` episodes (JSON-able)."""
    episode = dataset.episode_index()
    counts = np.maximum(np.bincount(episode, minlength=dataset.num_episodes), 1)
    per_episode = np.bincount(episode, weights=divergence.per_step, minlength=dataset.num_episodes) / counts
    summary: dict[str, Any] = {"kind": divergence.kind, "mean": float(divergence.per_step.mean())}
    if divergence.nll is not None:
        summary["nll_mean"] = float(divergence.nll.mean())
    facts = episode_outcomes(dataset)
    if facts.demonstrator and facts.demonstrator[0] is not None:
        who = np.asarray(facts.demonstrator, dtype=object)
        summary["demonstrators"] = {
            name: float(divergence.per_step[who[episode] == name].mean())
            for name in sorted({str(d) for d in facts.demonstrator})
        }
    order = np.argsort(-per_episode, kind="stable")[:worst]
    summary["worst_episodes"] = [{"episode": int(k), "divergence": float(per_episode[k])} for k in order]
    return summary


def _held_out(episodes: list[int], fraction: float) -> list[int]:
    """Every ``round(1 / fraction)``-th episode of ``episodes`` (at least one when there are two or more)."""
    if len(episodes) < 2:
        return []
    every = max(2, round(1 / fraction))
    return episodes[every - 1 :: every] or [episodes[-1]]


def compatibility(
    dataset: Dataset,
    policy: str,
    out: str | Path,
    train_config: Any,
    policy_overrides: dict[str, Any] | None = None,
    held_out: float = 0.2,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Leave-one-demonstrator-out compatibility of every demonstrator (see the module docstring).

    ``out`` holds one subset dataset and one run per demonstrator (a finished run is reused, so an interrupted
    call resumes); ``train_config`` is a :class:`clonekit.train.TrainConfig`. Returns per demonstrator the
    divergence on its own episodes, on the others' held-out episodes, and ``compatibility`` (their difference).
    """
    from clonekit.checkpoint import MODEL_FILE, load_policy
    from clonekit.train import train

    if not 0 < held_out < 1:
        raise ConfigError(f"held_out: expected a fraction in (0, 1), got {held_out}")
    facts = episode_outcomes(dataset)
    if not facts.demonstrator or facts.demonstrator[0] is None:
        raise ConfigError(f"{dataset.path}: compatibility needs a 'demonstrator' stream; the dataset has none")
    names = sorted(set(facts.demonstrator), key=str)
    if len(names) < 2:
        raise ConfigError(f"{dataset.path}: compatibility needs at least 2 demonstrators, found {len(names)}")
    out = Path(out)
    by_name = {name: [k for k, d in enumerate(facts.demonstrator) if d == name] for name in names}
    result: dict[str, Any] = {"policy": policy, "held_out": held_out, "demonstrators": {}}
    for index, name in enumerate(names):
        held = sorted(k for other in names if other != name for k in _held_out(by_name[other], held_out))
        held_set = set(held)
        kept = sorted(k for other in names if other != name for k in by_name[other] if k not in held_set)
        subset = write_subset(dataset, out / f"data_without_{index}", kept, f"leave out demonstrator {name!r}")
        run = out / f"run_without_{index}"
        if not (run / MODEL_FILE).is_file():
            train(policy, subset, run, train_config, policy_overrides, resume=run.exists(), show_progress=show_progress)
        model = load_policy(run)
        divergence = policy_divergence(model, dataset)
        episode = dataset.episode_index()
        own = np.isin(episode, by_name[name])
        others = np.isin(episode, held)
        own_value = float(divergence.per_step[own].mean())
        others_value = float(divergence.per_step[others].mean()) if others.any() else float("nan")
        result["demonstrators"][name] = {
            "episodes": len(by_name[name]),
            "divergence_own": own_value,
            "divergence_others_held_out": others_value,
            "compatibility": others_value - own_value,
        }
        result["kind"] = divergence.kind
    return result


__all__ = ["Divergence", "compatibility", "divergence_summary", "policy_divergence"]

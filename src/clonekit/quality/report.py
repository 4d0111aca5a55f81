"""A quality report for any dataset: size, outcomes, demonstrators, state coverage, transition diversity,
action conflicts and annotation coverage (``clonekit inspect DATA --quality``).

States are compared by a key per step: the observation's bytes when observations hold integers or booleans
(grid maps, symbolic views), otherwise each dimension quantized into ``bins`` equal bins over its range in the
data (recorded as ``state_keys``). From the keys:

* ``unique_state_fraction``: distinct states / steps; ``transition_diversity``: distinct (state, action, next
  state) / transitions (a step and the next one of the same episode). Low values mean the demonstrations
  repeat themselves ("Data Quality in Imitation Learning" ties transition diversity to success).
* ``action_conflict`` (action divergence within the data): for every state visited more than once, the spread
  of the actions taken there, averaged over those visits. Discrete actions: the entropy in bits of the
  empirical action distribution; continuous: the mean per-dimension standard deviation of the actions divided
  by their overall standard deviation. A consistent demonstrator scores 0; noise and incompatible styles raise
  it.
* Per demonstrator (``demonstrator`` stream): episodes, success, return, length, and ``agreement_with_others``:
  in the states another demonstrator also visited, how often this one's action equals the others' most common
  action (discrete) -- a cheap compatibility proxy; continuous actions: the mean distance to the others' mean
  action there, in units of the overall action standard deviation (``action_gap``).
* ``extraneous_steps``: the share of steps on loops back to an earlier state of the same episode, idling
  included (:mod:`clonekit.quality.extraneous`), and how many episodes have any.
* Annotation coverage, per optional stream: text -> non-empty steps; bool -> true steps; arrays -> steps with a
  non-zero value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clonekit.data import Dataset
from clonekit.data.format import REQUIRED_STREAMS
from clonekit.io import atomic_write_text
from clonekit.policies import Policy
from clonekit.quality.extraneous import episode_loop_steps
from clonekit.quality.outcomes import episode_outcomes
from clonekit.quality.policy_metrics import divergence_summary, policy_divergence

DEFAULT_BINS = 20


def state_keys(obs: np.ndarray, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, str]:
    """``(N,)`` int64 ids of the states of observations ``(N, ...)`` (equal ids: the same state), and how."""
    flat = obs.reshape(len(obs), -1)
    if flat.dtype.kind in "biu":
        method = "exact"
        rows = np.ascontiguousarray(flat)
    else:
        method = f"quantized, {bins} bins per dimension"
        values = flat.astype(np.float64)
        low, high = values.min(axis=0), values.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        rows = np.ascontiguousarray(np.clip(((values - low) / span * bins).astype(np.int64), 0, bins - 1))
    return _row_ids(rows), method


def _row_ids(rows: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 ids of the rows of ``rows`` ``(N, D)`` (equal ids: byte-equal rows)."""
    rows = np.ascontiguousarray(rows)
    _, ids = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel(), return_inverse=True)
    return ids.astype(np.int64).ravel()


def _action_keys(actions: np.ndarray) -> np.ndarray:
    return _row_ids(actions.reshape(len(actions), -1))


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def action_conflict(states: np.ndarray, actions: np.ndarray, discrete: bool) -> tuple[float, int]:
    """The mean action spread over visits to states seen more than once (see the module docstring), and the
    number of such visits (0: no state repeats, the value is 0)."""
    order = np.argsort(states, kind="stable")
    sorted_states = states[order]
    bounds = np.flatnonzero(np.diff(sorted_states)) + 1
    groups = np.split(order, bounds)
    repeated = [g for g in groups if len(g) > 1]
    visits = sum(len(g) for g in repeated)
    if not visits:
        return 0.0, 0
    if discrete:
        total = sum(len(g) * _entropy_bits(np.bincount(actions[g].astype(np.int64))) for g in repeated)
        return total / visits, visits
    flat = actions.reshape(len(actions), -1).astype(np.float64)
    scale = flat.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    total = sum(len(g) * float((flat[g].std(axis=0) / scale).mean()) for g in repeated)
    return total / visits, visits


def _agreement(states: np.ndarray, actions: np.ndarray, mine: np.ndarray, discrete: bool) -> tuple[float | None, int]:
    """Discrete: share of ``mine`` steps whose action is the others' most common action in that state;
    continuous: mean distance to the others' mean action there (in overall std units). Over the states the
    others visited; ``(None, 0)`` when none."""
    others = ~mine
    if not others.any() or not mine.any():
        return None, 0
    seen = np.isin(states[mine], states[others])
    if not seen.any():
        return None, 0
    my_states, my_actions = states[mine][seen], actions[mine][seen]
    if discrete:
        other_states, other_actions = states[others], actions[others].astype(np.int64)
        num_actions = int(actions.max()) + 1
        table = np.zeros((int(states.max()) + 1, num_actions), dtype=np.int64)
        np.add.at(table, (other_states, other_actions), 1)
        majority = table.argmax(axis=1)
        return float((majority[my_states] == my_actions.astype(np.int64)).mean()), len(my_states)
    flat = actions.reshape(len(actions), -1).astype(np.float64)
    scale = flat.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    sums = np.zeros((int(states.max()) + 1, flat.shape[1]))
    counts = np.zeros(int(states.max()) + 1)
    np.add.at(sums, states[others], flat[others])
    np.add.at(counts, states[others], 1)
    means = sums[my_states] / counts[my_states, None]
    gap = np.abs(flat[mine][seen] - means) / scale
    return float(gap.mean()), len(my_states)


def _coverage(dataset: Dataset) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in dataset.streams:
        if name in REQUIRED_STREAMS:
            continue
        values = dataset.column(name)
        if isinstance(values, list):
            out[name] = float(np.mean([bool(v) for v in values])) if values else 0.0
            continue
        array = np.asarray(values).reshape(dataset.num_steps, -1)
        out[name] = float((array != 0).any(axis=1).mean()) if len(array) else 0.0
    return out


def _summary(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"min": 0.0, "mean": 0.0, "max": 0.0}
    return {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}


def quality_report(dataset: Dataset, bins: int = DEFAULT_BINS, policy: Policy | None = None) -> dict[str, Any]:
    """The report as a JSON-able dict (see the module docstring); with a trained ``policy``, also its divergence
    from the data (``policy_divergence``: :mod:`clonekit.quality.policy_metrics`)."""
    facts = episode_outcomes(dataset)
    obs = np.asarray(dataset.column("obs"))
    actions = np.asarray(dataset.column("action"))
    discrete = actions.dtype.kind in "biu" and actions.ndim == 1
    states, method = state_keys(obs, bins)
    episode = dataset.episode_index()
    same_episode = episode[1:] == episode[:-1] if len(episode) else np.zeros(0, dtype=bool)
    action_ids = _action_keys(actions)
    if same_episode.any():
        triples = np.stack([states[:-1], action_ids[:-1], states[1:]], axis=1)[same_episode]
        transition_diversity = len(np.unique(triples, axis=0)) / len(triples)
    else:
        transition_diversity = 0.0
    conflict, conflict_visits = action_conflict(states, actions, discrete)
    loops = episode_loop_steps(states, dataset.episode_starts, dataset.episode_lengths)
    demonstrators: dict[str, Any] = {}
    if facts.demonstrator and facts.demonstrator[0] is not None:
        per_step = np.asarray(facts.demonstrator, dtype=object)[episode]
        for who in sorted({d for d in facts.demonstrator if d is not None}):
            mine_episodes = np.array([d == who for d in facts.demonstrator])
            agreement, compared = _agreement(states, actions, per_step == who, discrete)
            demonstrators[who] = {
                "episodes": int(mine_episodes.sum()),
                "success": float(facts.success[mine_episodes].mean()),
                "return_mean": float(facts.ret[mine_episodes].mean()),
                "length_mean": float(facts.length[mine_episodes].mean()),
                ("agreement_with_others" if discrete else "action_gap"): agreement,
                "compared_steps": compared,
            }
    report = {
        "path": str(dataset.path),
        "fingerprint": dataset.fingerprint,
        "episodes": dataset.num_episodes,
        "steps": dataset.num_steps,
        "length": _summary(facts.length.astype(np.float64)),
        "return": _summary(facts.ret),
        "success": float(facts.success.mean()) if len(facts.success) else 0.0,
        "success_source": facts.success_source,
        "state_keys": method,
        "unique_state_fraction": float(len(np.unique(states)) / max(1, len(states))),
        "transition_diversity": float(transition_diversity),
        "extraneous_steps": {
            "fraction": float(loops.mean()) if len(loops) else 0.0,
            "episodes_with_loops": int(np.logical_or.reduceat(loops, dataset.episode_starts).sum())
            if len(loops)
            else 0,
        },
        "action_conflict": {
            "value": conflict,
            "unit": "bits" if discrete else "std ratio",
            "repeat_visits": conflict_visits,
        },
        "demonstrators": demonstrators,
        "annotation_coverage": _coverage(dataset),
    }
    if policy is not None:
        report["policy_divergence"] = divergence_summary(dataset, policy_divergence(policy, dataset))
    return report


def report_markdown(report: dict[str, Any], plots: list[str]) -> str:
    """The report as markdown (plots referenced by file name)."""
    conflict = report["action_conflict"]
    lines = [
        f"# Quality of {report['path']}",
        "",
        f"{report['episodes']} episodes, {report['steps']} steps (fingerprint {report['fingerprint'][:12]}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| success ({report['success_source']}) | {report['success']:.3f} |",
        f"| episode length min / mean / max | {report['length']['min']:.0f} / {report['length']['mean']:.1f} / "
        f"{report['length']['max']:.0f} |",
        f"| return min / mean / max | {report['return']['min']:.3g} / {report['return']['mean']:.3g} / "
        f"{report['return']['max']:.3g} |",
        f"| unique states / steps ({report['state_keys']}) | {report['unique_state_fraction']:.3f} |",
        f"| transition diversity | {report['transition_diversity']:.3f} |",
        f"| action conflict ({conflict['unit']}, over {conflict['repeat_visits']} visits to repeated states) | "
        f"{conflict['value']:.3f} |",
        f"| extraneous steps (loops and idling; in {report['extraneous_steps']['episodes_with_loops']} episodes) | "
        f"{report['extraneous_steps']['fraction']:.3f} |",
    ]
    if report["demonstrators"]:
        key = next(iter(report["demonstrators"].values()))
        compat = "agreement_with_others" if "agreement_with_others" in key else "action_gap"
        lines += ["", "## Demonstrators", "", f"| demonstrator | episodes | success | return | length | {compat} |"]
        lines.append("|---|---|---|---|---|---|")
        for who, row in report["demonstrators"].items():
            value = "n/a" if row[compat] is None else f"{row[compat]:.3f}"
            lines.append(
                f"| {who} | {row['episodes']} | {row['success']:.3f} | {row['return_mean']:.3g} | "
                f"{row['length_mean']:.1f} | {value} |"
            )
    if "policy_divergence" in report:
        div = report["policy_divergence"]
        unit = "share of steps where its action differs" if div["kind"] == "mismatch" else "L2, action stds"
        lines += ["", f"## Policy divergence ({unit})", "", f"Mean: {div['mean']:.3f}"]
        if "nll_mean" in div:
            lines[-1] += f"; negative log likelihood of the recorded actions: {div['nll_mean']:.3f}"
        lines += ["", "| demonstrator | divergence |", "|---|---|"]
        lines += [f"| {who} | {value:.3f} |" for who, value in div.get("demonstrators", {}).items()]
        worst = ", ".join(f"{row['episode']} ({row['divergence']:.2f})" for row in div["worst_episodes"])
        lines += ["", f"Episodes it disagrees with most: {worst}"]
    if "compatibility" in report:
        compat = report["compatibility"]
        lines += [
            "",
            f"## Compatibility (leave one demonstrator out, policy {compat['policy']})",
            "",
            "| demonstrator | divergence on own | on others' held-out | compatibility |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {who} | {row['divergence_own']:.3f} | {row['divergence_others_held_out']:.3f} | "
            f"{row['compatibility']:+.3f} |"
            for who, row in compat["demonstrators"].items()
        ]
    if report["annotation_coverage"]:
        lines += ["", "## Annotation streams (share of steps with a value)", "", "| stream | coverage |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in report["annotation_coverage"].items()]
    lines += [""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def write_plots(dataset: Dataset, out: Path) -> list[str]:
    """Histograms of episode length and return, and a coverage map: per-channel occupancy for ``(C, H, W)``
    observations, a 2-D histogram of the first two dimensions for vectors. Returns the files written (none
    without matplotlib)."""
    from clonekit.evaluation.plots import _pyplot, save_figure

    plt = _pyplot()
    if plt is None:
        return []
    facts = episode_outcomes(dataset)
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].hist(facts.length, bins=20)
    axes[0].set_xlabel("episode length")
    axes[1].hist(facts.ret, bins=20)
    axes[1].set_xlabel("episode return")
    save_figure(fig, out / "histograms.png", dpi=100)
    written.append("histograms.png")
    obs = np.asarray(dataset.column("obs"))
    if obs.ndim == 4:
        channels = min(obs.shape[1], 4)
        fig, axes = plt.subplots(1, channels, figsize=(3 * channels, 3), squeeze=False)
        for c in range(channels):
            axes[0, c].imshow(obs[:, c].astype(np.float64).mean(axis=0), cmap="viridis")
            axes[0, c].set_title(f"channel {c}: mean occupancy")
            axes[0, c].axis("off")
    elif obs.ndim == 2 and obs.shape[1] >= 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.hist2d(obs[:, 0].astype(np.float64), obs[:, 1].astype(np.float64), bins=40)
        ax.set_xlabel("obs[0]")
        ax.set_ylabel("obs[1]")
        ax.set_title("state coverage")
    else:
        return written
    save_figure(fig, out / "coverage.png", dpi=100)
    written.append("coverage.png")
    return written


def write_report(
    dataset: Dataset, out: str | Path, bins: int = DEFAULT_BINS, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``quality.json``, ``report.md`` and the plots into ``out``; returns the report (``report``: one
    already computed, e.g. with a policy's divergence)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = report if report is not None else quality_report(dataset, bins)
    plots = write_plots(dataset, out)
    atomic_write_text(out / "quality.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report, plots))
    return report

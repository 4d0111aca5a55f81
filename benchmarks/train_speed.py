"""Thought cloning training speed: clonekit's step vs the straightforward formulation, same run (one JSON line).

Work: the ``thought_cloning`` policy at the sizes of ``clonekit run babyai-thought`` (hidden 128, batches of 16
episodes, windows of 32 steps) on ``EPISODES`` BabyAI bot demonstrations of its level (collected at the start,
a few seconds); each step is the training loop's: loss, backward, gradient clipping at norm 1, fused Adam.

* ``ms_per_step``: clonekit's policy, which computes only the real steps of a batch (the LSTMs up to the
  longest episode, everything per step on real steps alone) and folds the cell embeddings into the first
  convolution.
* ``padded_ms_per_step``: the same network computed the straightforward way (``_PaddedThoughtCloning``
  below): every step of every window, padding included (bot episodes are ~11 steps, so ~2/3 of a window is
  padding), the cells embedded and then convolved. ``speedup`` = padded / clonekit.
* ``loss_max_rel_diff``: both start from the same weights and train on the same ``CURVE_STEPS`` batches; the
  largest relative difference between their losses over those steps (float rounding only).

Trials are interleaved and the median is reported, so drift in machine load hits both sides alike; on a busy
machine the figures still move by ~10%. Threads: ``torch_threads`` (set ``OMP_NUM_THREADS``).
Run: ``python benchmarks/train_speed.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from clonekit.data import Dataset
from clonekit.data.windows import sample_batch
from clonekit.envs.babyai import MISSION_LEN, MISSION_WORDS, NUM_COLORS, NUM_OBJECT_TYPES, NUM_STATES, VIEW, VIEW_SIZE
from clonekit.experiments.babyai_thought import FULL
from clonekit.experts.collect import collect
from clonekit.policies import build_policy
from clonekit.policies.thought_cloning import ThoughtCloningPolicy
from clonekit.policies.thought_cloning.policy import BabyAIEncoder
from clonekit.policies.thought_cloning.tokenizer import PAD
from clonekit.train import clip_grad_norm, policy_config_for

EPISODES = 300
CURVE_STEPS = 40
TIMED_STEPS = 30
TRIALS = 5


def _embedded_cells_features(encoder: BabyAIEncoder, obs: Tensor) -> Tensor:
    """``BabyAIEncoder.forward`` written directly: embed every cell, sum, convolve."""
    obs = obs.long()
    view = obs[:, :VIEW_SIZE].reshape(-1, VIEW, VIEW, 3)
    cells = (
        encoder.cell_type(view[..., 0].clamp(0, NUM_OBJECT_TYPES - 1))
        + encoder.cell_color(view[..., 1].clamp(0, NUM_COLORS - 1))
        + encoder.cell_state(view[..., 2].clamp(0, NUM_STATES - 1))
    )
    image = encoder.conv(cells.permute(0, 3, 1, 2)).flatten(1)
    mission = obs[:, VIEW_SIZE + 1 : VIEW_SIZE + 1 + MISSION_LEN].clamp(0, len(MISSION_WORDS) + 1)
    mission_features = F.relu(encoder.mission(encoder.mission_words(mission).flatten(1)))
    return F.relu(encoder.mix(torch.cat([image, mission_features], 1)) + encoder.direction(obs[:, VIEW_SIZE] % 4))


class _PaddedThoughtCloning(ThoughtCloningPolicy):
    """The baseline: the thought cloning loss over every step of the ``(B, k)`` windows, padding masked."""

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obs, actions = batch["obs"], batch["action"].long()
        b, k = actions.shape
        done = (batch["terminated"] | batch["truncated"]).reshape(b, k)
        valid = (torch.cumsum(done.long(), 1) - done.long()) == 0
        features = _embedded_cells_features(self.encoder, obs.reshape(b * k, -1)).reshape(b, k, -1)
        thoughts = batch["thought"].reshape(b * k, -1).long()
        upper_out, _ = self.upper(features)
        word_logits = self._decode_teacher_forced(upper_out.reshape(b * k, -1), thoughts)
        word_mask = (thoughts != PAD) & valid.reshape(b * k, 1)
        nll = F.cross_entropy(word_logits.transpose(1, 2), thoughts, reduction="none")
        lower_in = torch.cat([features, self._thought_features(thoughts).reshape(b, k, -1)], 2)
        lower_out, _ = self.lower(lower_in)
        logits = self.action_head(lower_out)
        n_valid = valid.sum().clamp(min=1)
        action_nll = (F.cross_entropy(logits.transpose(1, 2), actions, reduction="none") * valid).sum() / n_valid
        log_p = F.log_softmax(logits, -1)
        entropy = (-(log_p.exp() * log_p).sum(-1) * valid).sum() / n_valid
        thought_loss = (nll * word_mask).sum() / word_mask.sum().clamp(min=1)
        loss = action_nll - self.config.entropy_weight * entropy + self.config.thought_weight * thought_loss
        return loss, {"action_nll": float(action_nll.detach()), "thought_nll": float(thought_loss.detach())}


def _trainer(policy: ThoughtCloningPolicy) -> tuple[ThoughtCloningPolicy, torch.optim.Optimizer]:
    return policy, torch.optim.Adam(policy.parameters(), lr=FULL.lr, fused=True)


def _step(policy: ThoughtCloningPolicy, optimizer: torch.optim.Optimizer, batch: dict[str, Tensor]) -> float:
    """One step of clonekit's training loop (``clonekit.train.train``) with its default clipping."""
    loss, _ = policy(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_grad_norm(list(policy.parameters()), 1.0)
    optimizer.step()
    return float(loss.detach())


def _ms_per_step(
    policy: ThoughtCloningPolicy, optimizer: torch.optim.Optimizer, batches: list[dict[str, Tensor]]
) -> float:
    start = time.perf_counter()
    for batch in batches:
        _step(policy, optimizer, batch)
    return (time.perf_counter() - start) / len(batches) * 1e3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        demos = collect(
            "babyai",
            "bot",
            episodes=EPISODES,
            seed=0,
            out=Path(tmp) / "data",
            num_tasks=EPISODES,
            env_kwargs={"level": FULL.level},
            show_progress=False,
        )
        _run(demos)


def _run(demos: Dataset) -> None:
    config = policy_config_for("thought_cloning", demos, {"hidden_size": FULL.hidden_size, "window": FULL.window})
    torch.manual_seed(0)
    ours = build_policy("thought_cloning", config)
    assert isinstance(ours, ThoughtCloningPolicy)
    padded = _PaddedThoughtCloning(ours.config)
    padded.load_state_dict(ours.state_dict())
    streams = [s for s in ours.required_streams if demos.streams[s].kind == "array"]
    encoded = {"thought": ours.encode_text("thought", list(demos.column("thought")))}
    generator = torch.Generator().manual_seed(1)
    count = CURVE_STEPS + TIMED_STEPS * (TRIALS + 1)
    batches = [
        sample_batch(demos, FULL.batch_size, generator, streams, ours.sample_windows(), encoded, True)
        for _ in range(count)
    ]
    fast, slow = _trainer(ours), _trainer(padded)
    curve = [(_step(*fast, b), _step(*slow, b)) for b in batches[:CURVE_STEPS]]
    rel_diff = max(abs(a - b) / abs(b) for a, b in curve)
    real_steps = sum(int(demos.episode_lengths[e]) for e in range(demos.num_episodes))
    timed = [batches[CURVE_STEPS + i * TIMED_STEPS : CURVE_STEPS + (i + 1) * TIMED_STEPS] for i in range(TRIALS + 1)]
    _ms_per_step(*fast, timed[0])  # warm-ups, not reported
    _ms_per_step(*slow, timed[0])
    results = [(_ms_per_step(*fast, t), _ms_per_step(*slow, t)) for t in timed[1:]]
    ms, padded_ms = (statistics.median(r[i] for r in results) for i in range(2))
    print(
        json.dumps(
            {
                "ms_per_step": round(ms, 2),
                "padded_ms_per_step": round(padded_ms, 2),
                "speedup": round(padded_ms / ms, 3),
                "loss_max_rel_diff": float(f"{rel_diff:.2e}"),
                "curve_steps": CURVE_STEPS,
                "mean_episode_steps": round(real_steps / demos.num_episodes, 1),
                "window": FULL.window,
                "batch_episodes": FULL.batch_size,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()

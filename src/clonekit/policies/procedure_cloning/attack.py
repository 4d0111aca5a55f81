"""A differentiable surrogate of procedure cloning's action, for observation attacks
(:mod:`clonekit.evaluation.attacks`): ``act`` ends in an argmax over an iterated search, which passes no
gradient to the observation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from clonekit.experts.bfs import FIRST_ACTION_LABEL, UNLABELLED
from clonekit.policies.base import AttackScores

# Search layers the surrogate gradient passes through (see procedure_cloning_scores).
PC_GRADIENT_LAYERS = 4


def procedure_cloning_scores(policy: Any, clean: dict[str, Tensor]) -> AttackScores:
    """Procedure cloning surrogate: logits ``(B, A)`` of the agent cell's move label.

    ``act`` runs the search-step network layer by layer until the agent's cell is labelled and reads the
    move off that label: an argmax in every layer, so no gradient reaches the observation. The surrogate
    takes the search on the *clean* observation up to ``PC_GRADIENT_LAYERS`` layers before the one that
    labelled the agent's cell, and re-runs those last layers on the perturbed observation with gradient:
    each layer sees the walls and goal (with gradient) and the labelled-cell mask of the layer before, whose
    gradient passes straight through from a soft mask (a cell counts as labelled with probability
    ``1 - p(unlabelled)``). The scores are the agent cell's logits at that last layer, restricted to the move
    labels. On the clean observation they are exactly the logits ``act`` reads its action from; the earlier
    layers (held at their clean values) get no gradient, so the attack they guide is weaker than one that
    could also rewrite the start of the search.
    """
    obs = clean["obs"]
    cfg = policy.config
    b, _, h, w = obs.shape
    agent = obs[:, cfg.agent_channel].flatten(1).float().argmax(1)
    max_layers = cfg.max_search_steps or h * w
    # The clean search, recording the map before every layer and the layer that labels the agent's cell.
    with torch.no_grad():
        maps = obs[:, [cfg.wall_channel, cfg.goal_channel]].float()
        labels = torch.zeros(b, h, w, dtype=torch.long, device=obs.device)
        history = [labels]
        reached_at = torch.zeros(b, dtype=torch.long, device=obs.device)
        need = torch.ones(b, dtype=torch.bool, device=obs.device)
        while bool(need.any()) and len(history) <= max_layers:
            labelled = (labels != UNLABELLED).float().unsqueeze(1)
            pred = policy.step_net(torch.cat([maps, labelled], dim=1)).argmax(1)
            new = torch.where((labels == UNLABELLED) & need[:, None, None], pred, labels)
            reached = new.flatten(1).gather(1, agent[:, None]).squeeze(1) != UNLABELLED
            reached_at = torch.where(need & reached, len(history), reached_at)
            need = need & (new != labels).flatten(1).any(1) & ~reached
            labels = new
            history.append(labels)
    # Slots whose search failed (reached_at 0) keep zero scores, so no gradient: ``act`` takes action 0 there.
    found = reached_at > 0
    first = (reached_at - PC_GRADIENT_LAYERS).clamp(min=0)
    start = torch.stack(history)[first, torch.arange(b, device=obs.device)]
    index = agent[:, None, None].expand(-1, policy.num_labels, 1)

    def scores(inputs: dict[str, Tensor]) -> Tensor:
        x = inputs["obs"]
        maps = x[:, [cfg.wall_channel, cfg.goal_channel]].float()
        labels = start
        labelled = (labels != UNLABELLED).float().unsqueeze(1)
        out = torch.zeros(b, policy.num_labels, device=x.device)
        for k in range(1, PC_GRADIENT_LAYERS + 1):
            logits = policy.step_net(torch.cat([maps, labelled], dim=1))
            out = torch.where(
                (found & (first + k == reached_at))[:, None], logits.flatten(2).gather(2, index)[..., 0], out
            )
            soft = labelled[:, 0] + (1 - labelled[:, 0]) * (1 - logits.softmax(1)[:, UNLABELLED])
            labels = torch.where(labels == UNLABELLED, logits.argmax(1), labels)
            labelled = ((labels != UNLABELLED).float() + soft - soft.detach()).unsqueeze(1)
        return out[:, FIRST_ACTION_LABEL:]

    return scores

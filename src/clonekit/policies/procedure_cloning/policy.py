"""Procedure cloning (Yang et al., "Chain of Thought Imitation with Procedure Cloning").

Behaviour cloning maps a maze straight to an action and has to memorize mazes. Procedure cloning imitates
the expert's *computation*: the breadth-first search from the goal that labels each cell with the move
towards the goal (see :mod:`clonekit.experts.bfs` for the encoding). A fully convolutional network learns
one search step: from the walls, the goal and the set of cells labelled by layer ``k - 1``, predict the
labels after layer ``k``.
At run time the policy applies that step repeatedly, from an empty map, until the frontier reaches the
agent cell, and then reads the action off the agent's label. Because a search step is local, the network
learned on a few mazes runs the search on mazes it has never seen.

Training is teacher-forced: for each sampled step, pick a layer ``k`` uniformly in ``[0, D]`` (``D`` = the
agent's layer), give the true map of layers ``< k`` and train a per-cell cross-entropy on the labels of
layer ``<= k`` for the cells not yet labelled.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._higher_order_ops import while_loop

from clonekit.experts.bfs import FIRST_ACTION_LABEL, LABEL, LAYER, UNLABELLED
from clonekit.policies.base import AttackScores, Policy
from clonekit.policies.procedure_cloning.attack import procedure_cloning_scores
from clonekit.policies.procedure_cloning.config import ProcedureCloningConfig


class CrossConv2d(nn.Conv2d):
    """A 3x3 convolution that sees only a cell and its four neighbours (the cells one move away).

    A search step labels a cell from the state of the cells one move away; the diagonal cells carry no
    information about it, and leaving them out keeps the network from fitting patterns in them that do not
    carry over to new mazes.
    """

    mask: Tensor

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        self.register_buffer("mask", torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]))

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ProcedureCloningPolicy(Policy):
    """Procedure cloning: learns one step of the expert's search and repeats it to act (Yang et al., 2022).

    An iterated search-step network over ``(B, C, H, W)`` maps.
    ``act`` keeps the search map in its state: while the walls and goal of a slot are unchanged, the search
    continues from where it stopped (the search does not depend on the agent position, so this gives the
    same labels as starting over, at a fraction of the cost).
    """

    name = "procedure_cloning"
    required_streams = ("obs", "action", "procedure")

    @property
    def deterministic(self) -> bool:
        """The search and the action read off it are argmaxes."""
        return True

    def __init__(self, config: ProcedureCloningConfig) -> None:
        super().__init__()
        self.config = config
        self.num_labels = FIRST_ACTION_LABEL + config.num_actions
        width = config.hidden_channels
        layers: list[nn.Module] = [CrossConv2d(3, width), nn.ReLU()]
        for _ in range(config.num_layers - 1):
            layers += [nn.Conv2d(width, width, 1), nn.ReLU()]
        layers.append(nn.Conv2d(width, self.num_labels, 1))
        self.step_net = nn.Sequential(*layers)

    # --- one search step -------------------------------------------------------------------------------
    def search_step_logits(self, obs: Tensor, labels: Tensor) -> Tensor:
        """Logits ``(B, L, H, W)`` of every cell's label after one more search layer.

        ``obs`` ``(B, C, H, W)``; ``labels`` ``(B, H, W)`` int64, the map so far (0 = not labelled). The agent
        channel is not an input: the search depends only on walls and goal.
        """
        cfg = self.config
        maps = obs[:, [cfg.wall_channel, cfg.goal_channel]].float()
        # The search state is the set of labelled cells: labels already written never change and do not
        # influence the next layer, so the step network sees only which cells are labelled.
        labelled = (labels != UNLABELLED).float().unsqueeze(1)
        return self.step_net(torch.cat([maps, labelled], dim=1))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obs, procedure = batch["obs"], batch["procedure"]
        layer = procedure[:, LAYER].long()  # (B, H, W), -1 where not labelled
        label = procedure[:, LABEL].long()
        agent = obs[:, self.config.agent_channel].flatten(1).float().argmax(1)
        last_layer = layer.flatten(1).gather(1, agent[:, None]).squeeze(1).clamp(min=0)  # (B,)
        k = (torch.rand(obs.shape[0], device=obs.device) * (last_layer + 1).float()).long()[:, None, None]
        known = (layer >= 0) & (layer < k)
        given = torch.where(known, label, UNLABELLED)
        target = torch.where((layer >= 0) & (layer <= k), label, UNLABELLED)
        logits = self.search_step_logits(obs, given)
        todo = ~known
        new_cells = todo & (target != UNLABELLED)
        cell_loss = F.cross_entropy(logits, target, reduction="none")
        # The frontier (cells labelled in this layer) is a small fraction of the map but is where all the
        # information is; averaging it separately makes the search step learnable in a few hundred steps.
        loss = cell_loss[todo].mean()
        if new_cells.any():
            loss = loss + cell_loss[new_cells].mean()
        with torch.no_grad():
            pred = logits.argmax(1)
            info = {
                "procedure_nll": float(loss.detach()),
                "cell_accuracy": float((pred == target)[todo].float().mean()),
                "frontier_accuracy": float((pred == target)[new_cells].float().mean()) if new_cells.any() else 1.0,
                "map_exact": float(((pred == target) | ~todo).flatten(1).all(1).float().mean()),
            }
        return loss, info

    # --- acting ----------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> None:
        return None

    def search(self, obs: Tensor, state: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Expand the search until it labels each slot's agent cell; returns the new state.

        State: ``labels`` ``(B, H, W)`` int64 search map, ``key`` ``(B, 2, H, W)`` the walls and goal it was
        computed for, ``steps`` ``(B,)`` search layers expanded so far.
        """
        cfg = self.config
        b, _, h, w = obs.shape
        key = obs[:, [cfg.wall_channel, cfg.goal_channel]]
        if state is None or state["labels"].shape[0] != b:
            labels = torch.zeros(b, h, w, dtype=torch.long, device=obs.device)
            steps = torch.zeros(b, dtype=torch.long, device=obs.device)
        else:
            same = (state["key"] == key).flatten(1).all(1)
            labels = torch.where(same[:, None, None], state["labels"], UNLABELLED)
            steps = torch.where(same, state["steps"], 0)
        agent = obs[:, cfg.agent_channel].flatten(1).float().argmax(1)
        max_steps = cfg.max_search_steps or h * w
        need = (labels.flatten(1).gather(1, agent[:, None]).squeeze(1) == UNLABELLED) & (steps < max_steps)
        while bool(need.any()):
            idx = need.nonzero().squeeze(1)
            old = labels[idx]
            pred = self.search_step_logits(obs[idx], old).argmax(1)
            new = torch.where(old == UNLABELLED, pred, old)
            labels[idx] = new
            steps[idx] += 1
            grew = (new != old).flatten(1).any(1)
            reached = new.flatten(1).gather(1, agent[idx, None]).squeeze(1) != UNLABELLED
            # A search that stops growing will never reach the agent: give up on that slot.
            need[idx] = grew & ~reached & (steps[idx] < max_steps)
        return {"labels": labels, "key": key.clone(), "steps": steps}

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        x = obs["obs"]
        new_state = self.search(x, state)
        agent = x[:, self.config.agent_channel].flatten(1).float().argmax(1)
        agent_label = new_state["labels"].flatten(1).gather(1, agent[:, None]).squeeze(1)
        # Unlabelled (search failed) or goal label: no move is implied; action 0 keeps the output defined.
        action = (agent_label - FIRST_ACTION_LABEL).clamp(0, self.config.num_actions - 1)
        return action, new_state

    def explain(self, obs: dict[str, Tensor], state: Any | None = None) -> dict[str, Tensor]:
        """The predicted procedure: ``procedure_labels`` ``(B, H, W)`` and ``search_steps`` ``(B,)``."""
        new_state = self.search(obs["obs"], state)
        return {"procedure_labels": new_state["labels"], "search_steps": new_state["steps"]}

    def attack_scores(self, clean: dict[str, Tensor]) -> AttackScores:
        """A straight-through surrogate of the last search layers (see :mod:`.attack`)."""
        return procedure_cloning_scores(self, clean)

    def export_module(self) -> nn.Module:
        return _SearchExport(self)


class _SearchExport(nn.Module):
    """``obs -> (action, procedure_labels)``: ``act`` from an empty search map, as one traceable graph.

    ``ProcedureCloningPolicy.search`` runs the step network on the slots that still search; here every step
    runs on the whole batch and the slots that are done keep their labels, which gives the same labels (the
    step network treats each slot on its own). The loop is a ``while_loop``, so it exports as an ONNX
    ``Loop`` that stops as soon as every slot is done.
    """

    output_names = ("action", "procedure_labels")

    def __init__(self, policy: ProcedureCloningPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.policy.config
        step_net = self.policy.step_net
        b, _, h, w = obs.shape
        max_steps = cfg.max_search_steps or h * w
        maps = obs[:, [cfg.wall_channel, cfg.goal_channel]].float()
        agent = obs[:, cfg.agent_channel].flatten(1).float().argmax(1)
        labels = torch.zeros(b, h, w, dtype=torch.long, device=obs.device)
        steps = torch.zeros(b, dtype=torch.long, device=obs.device)
        need = torch.ones(b, dtype=torch.bool, device=obs.device)

        def searching(labels: Tensor, steps: Tensor, need: Tensor, maps: Tensor, agent: Tensor) -> Tensor:
            return need.any()

        def step(
            labels: Tensor, steps: Tensor, need: Tensor, maps: Tensor, agent: Tensor
        ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
            # Same computation as ``search_step_logits`` + the update in ``search``, masked by ``need``.
            labelled = (labels != UNLABELLED).float().unsqueeze(1)
            pred = step_net(torch.cat([maps, labelled], dim=1)).argmax(1)
            new = torch.where((labels == UNLABELLED) & need[:, None, None], pred, labels)
            steps = steps + need.long()
            grew = (new != labels).flatten(1).any(1)
            reached = new.flatten(1).gather(1, agent[:, None]).squeeze(1) != UNLABELLED
            need = need & grew & ~reached & (steps < max_steps)
            # while_loop outputs must not alias its inputs: the constant carries are copied.
            return new, steps, need, maps.clone(), agent.clone()

        # ``maps`` and ``agent`` are carried rather than captured: captured tensors fail ONNX decomposition.
        labels, _, _, _, _ = while_loop(searching, step, (labels, steps, need, maps, agent))
        agent_label = labels.flatten(1).gather(1, agent[:, None]).squeeze(1)
        action = (agent_label - FIRST_ACTION_LABEL).clamp(0, cfg.num_actions - 1)
        return action, labels

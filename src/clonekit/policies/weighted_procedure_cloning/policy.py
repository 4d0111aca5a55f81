"""Weighted procedure cloning: procedure cloning (Yang et al., 2022) of a cheapest-route search.

:mod:`clonekit.policies.procedure_cloning` learns one layer of a breadth-first search, where layer ``k`` follows
from layer ``k - 1`` alone. On a grid whose moves cost different amounts (:mod:`clonekit.envs.terrain`), the
expert runs Dijkstra's search instead and settles cells level by level of cost-to-go
(:mod:`clonekit.experts.dijkstra`): a cell is settled at level ``t`` when a neighbour ``n`` settled at
``t - cost(n)``, so level ``t`` depends on the last ``max_step_cost`` levels. The search state a step sees is
therefore, per cell, whether it is settled and how many levels ago (its *age*, one-hot up to
``max_step_cost - 1``), next to the observation's walls, goal and terrain. A fully convolutional network
(a cell and its four neighbours, then 1x1 layers) predicts every cell's label after one more level.

At run time the policy applies that step from an empty map, one level at a time, until the agent's cell is
settled, and reads the action off its label. A search that settles nothing for ``max_step_cost`` levels in a row
can settle nothing more; the policy then gives up and takes action 0.

Training is teacher-forced as procedure cloning's: for each sampled step, pick a level ``k`` uniformly in
``[0, D]`` (``D`` = the agent's cost-to-go), give the true map of levels ``< k`` and train a per-cell cross-entropy
on the labels of levels ``<= k`` for the cells not yet settled, with their own averages for the cells settled at
level ``k`` and for the unsettled cells next to settled ones (where a step must tell a cheap neighbour from a
dear one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clonekit.data import Dataset
from clonekit.experts.bfs import FIRST_ACTION_LABEL, LABEL, LAYER, UNLABELLED
from clonekit.policies.base import Policy
from clonekit.policies.procedure_cloning.policy import CrossConv2d
from clonekit.policies.weighted_procedure_cloning.config import WeightedProcedureCloningConfig

# Steps whose procedure maps config_from_data reads to find the largest step cost (spread over the dataset).
_COST_PROBE_STEPS = 512


class WeightedProcedureCloningPolicy(Policy):
    """Weighted procedure cloning: learns one level of the expert's Dijkstra search and repeats it to act.

    An iterated search-step network over ``(B, C, H, W)`` maps. ``act`` keeps the search in its state: while the
    grid (every channel but the agent's) of a slot is unchanged, the search continues from where it stopped (it
    does not depend on the agent position, so this gives the same labels as starting over).
    """

    name = "weighted_procedure_cloning"
    required_streams = ("obs", "action", "procedure")

    @property
    def deterministic(self) -> bool:
        """The search and the action read off it are argmaxes."""
        return True

    def __init__(self, config: WeightedProcedureCloningConfig) -> None:
        super().__init__()
        self.config = config
        self.num_labels = FIRST_ACTION_LABEL + config.num_actions
        channels = config.obs_shape[0]
        self.grid_channels = [c for c in range(channels) if c != config.agent_channel]
        width = config.hidden_channels
        # Grid channels, the settled mask, and the settled cells' age one-hot (ages 0 .. max_step_cost - 1).
        inputs = len(self.grid_channels) + 1 + config.max_step_cost
        layers: list[nn.Module] = [CrossConv2d(inputs, width), nn.ReLU()]
        for _ in range(config.num_layers - 1):
            layers += [nn.Conv2d(width, width, 1), nn.ReLU()]
        layers.append(nn.Conv2d(width, self.num_labels, 1))
        self.step_net = nn.Sequential(*layers)

    @classmethod
    def config_from_data(cls, dataset: Dataset) -> dict[str, Any]:
        """``max_step_cost``: the largest cost-to-go difference between two neighbouring settled cells in the
        procedure maps of up to 512 steps spread over the dataset (the cost of the dearest move the expert's
        search made; at least 1). Nothing without a procedure stream (training then names the missing stream)."""
        if "procedure" not in dataset.streams or dataset.num_steps == 0:
            return {}
        rows = np.unique(
            np.linspace(0, dataset.num_steps - 1, min(dataset.num_steps, _COST_PROBE_STEPS)).astype(np.int64)
        )
        level = np.asarray(dataset.gather(rows, ["procedure"])["procedure"][:, LAYER], dtype=np.int64)
        largest = 1
        for a, b in ((level[:, 1:], level[:, :-1]), (level[:, :, 1:], level[:, :, :-1])):
            both = (a >= 0) & (b >= 0)
            if both.any():
                largest = max(largest, int(np.abs(a - b)[both].max()))
        return {"max_step_cost": largest}

    # --- one search level ------------------------------------------------------------------------------
    def grid(self, obs: Tensor) -> Tensor:
        """The search step's view of the observation ``(B, C, H, W)``: every channel but the agent's, as float."""
        return obs[:, self.grid_channels].float()

    def level_logits(self, grid: Tensor, level: Tensor, now: Tensor) -> Tensor:
        """Logits ``(B, L, H, W)`` of every cell's label after settling level ``now + 1``.

        ``grid`` ``(B, C - 1, H, W)`` from :meth:`grid`; ``level`` ``(B, H, W)`` int64, each cell's settled level
        (its cost-to-go; -1 when not settled); ``now`` ``(B,)`` the last level expanded (-1 before the first).
        """
        settled = level >= 0
        age = now[:, None, None] - level
        state = [settled] + [settled & (age == j) for j in range(self.config.max_step_cost)]
        return self.step_net(torch.cat([grid, torch.stack(state, dim=1).float()], dim=1))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        obs, procedure = batch["obs"], batch["procedure"]
        layer = procedure[:, LAYER].long()  # (B, H, W) cost-to-go, -1 where not settled
        label = procedure[:, LABEL].long()
        agent = obs[:, self.config.agent_channel].flatten(1).float().argmax(1)
        last_level = layer.flatten(1).gather(1, agent[:, None]).squeeze(1).clamp(min=0)  # (B,)
        k = (torch.rand(obs.shape[0], device=obs.device) * (last_level + 1).float()).long()
        known = (layer >= 0) & (layer < k[:, None, None])
        given = torch.where(known, layer, -1)
        target = torch.where((layer >= 0) & (layer <= k[:, None, None]), label, UNLABELLED)
        logits = self.level_logits(self.grid(obs), given, k - 1)
        todo = ~known
        new_cells = todo & (target != UNLABELLED)
        # Unsettled cells within one cell of a settled one: where a step decides whether a neighbour's cost is paid yet.
        border = todo & (F.max_pool2d(known[:, None].float(), 3, 1, 1)[:, 0] > 0)
        cell_loss = F.cross_entropy(logits, target, reduction="none")
        # As procedure cloning's: the cells settled at this level are few, so they get their own average; so do
        # the border cells, many of which must wait for a dearer neighbour (a breadth-first step would settle them).
        loss = cell_loss[todo].mean()
        for cells in (new_cells, border):
            if cells.any():
                loss = loss + cell_loss[cells].mean()
        with torch.no_grad():
            pred = logits.argmax(1)
            info = {
                "procedure_nll": float(loss.detach()),
                "cell_accuracy": float((pred == target)[todo].float().mean()),
                "frontier_accuracy": float((pred == target)[new_cells].float().mean()) if new_cells.any() else 1.0,
                "border_accuracy": float((pred == target)[border].float().mean()) if border.any() else 1.0,
                "map_exact": float(((pred == target) | ~todo).flatten(1).all(1).float().mean()),
            }
        return loss, info

    # --- acting ----------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> None:
        return None

    def search(self, obs: Tensor, state: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Expand the search level by level until it settles each slot's agent cell; returns the new state.

        State: ``labels`` ``(B, H, W)`` int64 label map, ``level`` ``(B, H, W)`` int64 settled levels (-1 not
        settled), ``now`` ``(B,)`` the last level expanded, ``idle`` ``(B,)`` levels in a row that settled nothing,
        ``key`` the grid it was computed for.
        """
        cfg = self.config
        b, _, h, w = obs.shape
        key = obs[:, self.grid_channels]
        if state is None or state["labels"].shape[0] != b:
            labels = torch.zeros(b, h, w, dtype=torch.long, device=obs.device)
            level = torch.full((b, h, w), -1, dtype=torch.long, device=obs.device)
            now = torch.full((b,), -1, dtype=torch.long, device=obs.device)
            idle = torch.zeros(b, dtype=torch.long, device=obs.device)
        else:
            same = (state["key"] == key).flatten(1).all(1)
            labels = torch.where(same[:, None, None], state["labels"], UNLABELLED)
            level = torch.where(same[:, None, None], state["level"], -1)
            now = torch.where(same, state["now"], -1)
            idle = torch.where(same, state["idle"], 0)
        grid = self.grid(obs)
        agent = obs[:, cfg.agent_channel].flatten(1).float().argmax(1)
        max_levels = cfg.max_search_steps or cfg.max_step_cost * h * w
        settled = labels.flatten(1).gather(1, agent[:, None]).squeeze(1) != UNLABELLED
        need = ~settled & (idle < cfg.max_step_cost) & (now + 1 < max_levels)
        while bool(need.any()):
            idx = need.nonzero().squeeze(1)
            old = labels[idx]
            pred = self.level_logits(grid[idx], level[idx], now[idx]).argmax(1)
            new = torch.where(old == UNLABELLED, pred, old)
            fresh = new != old
            now[idx] += 1
            level[idx] = torch.where(fresh, now[idx][:, None, None], level[idx])
            labels[idx] = new
            idle[idx] = torch.where(fresh.flatten(1).any(1), 0, idle[idx] + 1)
            reached = new.flatten(1).gather(1, agent[idx, None]).squeeze(1) != UNLABELLED
            # Nothing settled for max_step_cost levels: no settled cell can settle a neighbour any more.
            need[idx] = ~reached & (idle[idx] < cfg.max_step_cost) & (now[idx] + 1 < max_levels)
        return {"labels": labels, "level": level, "now": now, "idle": idle, "key": key.clone()}

    def act(self, obs: dict[str, Tensor], state: Any | None = None) -> tuple[Tensor, Any]:
        x = obs["obs"]
        new_state = self.search(x, state)
        agent = x[:, self.config.agent_channel].flatten(1).float().argmax(1)
        agent_label = new_state["labels"].flatten(1).gather(1, agent[:, None]).squeeze(1)
        # Not settled (search failed) or goal label: no move is implied; action 0 keeps the output defined.
        action = (agent_label - FIRST_ACTION_LABEL).clamp(0, self.config.num_actions - 1)
        return action, new_state

    def explain(self, obs: dict[str, Tensor], state: Any | None = None) -> dict[str, Tensor]:
        """The predicted procedure: ``procedure_labels`` ``(B, H, W)``, ``cost_to_go`` ``(B, H, W)`` (the level each
        cell was settled at, -1 where not settled) and ``search_steps`` ``(B,)`` (levels expanded)."""
        new_state = self.search(obs["obs"], state)
        return {
            "procedure_labels": new_state["labels"],
            "cost_to_go": new_state["level"],
            "search_steps": new_state["now"] + 1,
        }

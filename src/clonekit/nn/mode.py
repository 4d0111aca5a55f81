"""MoDE: a diffusion action head whose denoiser is a mixture of expert MLPs routed by the noise level alone.

After Reuss et al. (2024, "Efficient Diffusion Transformer Policies with Mixture of Expert Denoisers"). The
head is :class:`~clonekit.nn.diffusion.DiffusionHead` (same preconditioning, training noise levels, noise
schedule and sampler) with another network ``F``::

    inputs (B, F + D + 32) -> Linear -> SiLU -> h (B, W)
    per layer l:  h = h + sum over the router's top-k experts e of  gate_e * expert_{l,e}(h)
                  expert: Linear(W, H) -> SiLU -> Linear(H, W); router: Linear(32, E) on the noise embedding
    h -> Linear(W, D)

The router of every layer sees only the embedding of the noise level, never the observation or the noisy
action. In training each sample has its own noise level and so its own experts, and a Switch-Transformer
load-balancing term keeps every expert in use. When sampling, the noise level of step ``i`` is the same for
every row and every call, so the experts (and their gates) of each step are computed once and cached
("expert caching"): a denoising step runs the chosen experts only, with no router. The cache follows the
router's weights (it is rebuilt after any change to them, e.g. an optimizer step or loading a checkpoint).

With ``top_k = 1`` the gate is the router's probability of the chosen expert (as in the Switch Transformer,
so the denoising loss trains the router); with ``top_k = 2`` the two probabilities are renormalized to sum
to 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from clonekit.nn.diffusion import DiffusionHead

NOISE_EMBEDDING = 32  # width of DiffusionHead's noise embedding, the routers' input

Routing = tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]  # per layer: (experts, gates)


class MoDEHead(DiffusionHead):
    """``features (B, F) -> action (B, D)`` by few-step denoising with a noise-routed mixture of experts.

    Args:
        in_dim: Width ``F`` of the observation features the denoiser is conditioned on.
        action_dim: Width ``D`` of the (flattened, normalized) action.
        width: Width ``W`` of the residual stream between the mixture layers.
        expert_hidden: Hidden width ``H`` of every expert MLP.
        layers: Number of mixture layers.
        experts: Experts ``E`` per layer.
        top_k: Experts run per layer and denoising step (1 or 2).
        balance_weight: Weight of the load-balancing term added to the denoising loss.
        cache_routing: Sample with the per-step routing computed once (True), or route every step (False;
            the same actions, slower; for checking the cache).
        sigma_data, sigma_min, sigma_max, sampling_steps, schedule, sampler: As for ``DiffusionHead``.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        width: int = 128,
        expert_hidden: int = 96,
        layers: int = 3,
        experts: int = 4,
        top_k: int = 1,
        balance_weight: float = 0.01,
        cache_routing: bool = True,
        sigma_data: float = 0.5,
        sigma_min: float = 0.001,
        sigma_max: float = 80.0,
        sampling_steps: int = 5,
        schedule: str = "exponential",
        sampler: str = "euler",
    ) -> None:
        if top_k not in (1, 2) or top_k > experts:
            raise ValueError(f"mode top_k: expected 1 or 2 and <= experts={experts}, got {top_k}")
        super().__init__(
            in_dim,
            action_dim,
            hidden_sizes=(),
            sigma_data=sigma_data,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            sampling_steps=sampling_steps,
            schedule=schedule,
            sampler=sampler,
        )
        del self.net  # the dense network DiffusionHead builds; the mixture below replaces it
        self.top_k = top_k
        self.num_experts = experts
        self.balance_weight = balance_weight
        self.cache_routing = cache_routing
        self.input_layer = nn.Linear(in_dim + action_dim + NOISE_EMBEDDING, width)
        self.routers = nn.ModuleList(nn.Linear(NOISE_EMBEDDING, experts) for _ in range(layers))
        self.experts = nn.ModuleList(
            nn.ModuleList(
                nn.Sequential(nn.Linear(width, expert_hidden), nn.SiLU(), nn.Linear(expert_hidden, width))
                for _ in range(experts)
            )
            for _ in range(layers)
        )
        self.output_layer = nn.Linear(width, action_dim)
        self._routing_cache: tuple[tuple[tuple[int, int], ...], list[Routing]] | None = None
        self._balance: list[Tensor] = []

    def route(self, noise_embedding: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per layer ``(experts (B, k) int64, gates (B, k), probabilities (B, E))`` of noise embeddings ``(B, 32)``."""
        routes = []
        for router in self.routers:
            probs = router(noise_embedding).softmax(dim=-1)
            gates, chosen = probs.topk(self.top_k, dim=-1)
            if self.top_k > 1:
                gates = gates / gates.sum(dim=-1, keepdim=True)
            routes.append((chosen, gates, probs))
        return routes

    def network(self, inputs: Tensor, step: int | None) -> Tensor:
        if step is not None and self.cache_routing:
            return self._cached_forward(inputs, self.cached_routing()[step])
        routes = self.route(inputs[:, -NOISE_EMBEDDING:])
        if step is None:  # a training call (from loss): keep the load-balancing terms for it
            self._balance = [self._balance_term(chosen, probs) for chosen, _, probs in routes]
        h = torch.nn.functional.silu(self.input_layer(inputs))
        for layer, (chosen, gates, _) in zip(self._expert_layers(), routes, strict=True):
            mixed = torch.zeros_like(h)
            for e, expert in enumerate(layer):
                rows, slot = (chosen == e).nonzero(as_tuple=True)
                if len(rows):
                    mixed = mixed.index_add(0, rows, expert(h[rows]) * gates[rows, slot, None])
            h = h + mixed
        return self.output_layer(h)

    def _cached_forward(self, inputs: Tensor, routing: Routing) -> Tensor:
        # Every row has this step's noise level, so every row runs the same (cached) experts.
        h = torch.nn.functional.silu(self.input_layer(inputs))
        for layer, (chosen, gates) in zip(self._expert_layers(), routing, strict=True):
            mixed = gates[0] * layer[chosen[0]](h)
            for e, gate in zip(chosen[1:], gates[1:], strict=True):
                mixed = mixed + gate * layer[e](h)
            h = h + mixed
        return self.output_layer(h)

    def _expert_layers(self) -> list[list[nn.Module]]:
        """The experts ``[layer][expert]``."""
        return [list(layer.children()) for layer in self.experts]

    def _balance_term(self, chosen: Tensor, probs: Tensor) -> Tensor:
        """Switch Transformer's ``E * sum_e f_e P_e`` (1 when balanced): ``f_e`` the share of routing slots given
        to expert ``e``, ``P_e`` its mean router probability."""
        counts = torch.zeros(self.num_experts, device=probs.device).index_add(
            0, chosen.flatten(), torch.ones(chosen.numel(), device=probs.device)
        )
        return self.num_experts * (counts / chosen.numel() * probs.mean(dim=0)).sum()

    def train(self, mode: bool = True) -> MoDEHead:
        super().train(mode)
        if not mode:  # eagerly, so that a graph traced for export finds the routing ready
            self.cached_routing()
        return self

    def cached_routing(self) -> list[Routing]:
        """Per sampling step: per layer, the chosen experts and their gates (Python numbers), from the routers'
        current weights; computed once and reused until those weights change (in place or replaced)."""
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            if self._routing_cache is None:
                raise RuntimeError("MoDEHead: call eval() before tracing, so that the expert routing is cached")
            return self._routing_cache[1]
        weights = [*self.noise_embedding.parameters(), *self.routers.parameters()]
        key = tuple((id(w), w._version) for w in weights)
        if self._routing_cache is None or self._routing_cache[0] != key:
            with torch.no_grad():
                sigmas = self.sigmas[:-1].to(weights[0].device)
                embedding = self.noise_embedding((sigmas.log() / 4)[:, None])  # c_noise, as in denoise
                table: list[Routing] = [
                    tuple(
                        (tuple(int(e) for e in chosen[i]), tuple(float(g) for g in gates[i]))
                        for chosen, gates, _ in self.route(embedding)
                    )
                    for i in range(len(sigmas))
                ]
            self._routing_cache = (key, table)
        return self._routing_cache[1]

    def loss(self, features: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The denoising loss of ``DiffusionHead`` plus ``balance_weight`` times the mean load-balancing term."""
        denoise_loss, info = super().loss(features, actions)
        balance = torch.stack(self._balance).mean()
        self._balance = []
        loss = denoise_loss + self.balance_weight * balance
        return loss, {**info, "balance_loss": float(balance.detach())}

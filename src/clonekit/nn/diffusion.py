"""Score-based diffusion action head in the style of BESO (Reuss et al., 2023).

Continuous-time denoising with the preconditioning of Karras et al. (2022, "EDM"): a network ``F`` is
wrapped as the denoiser ``D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), obs)``
and trained to recover a demonstrated action from a noisy copy, at noise levels ``sigma`` drawn from a
log-logistic density around ``sigma_data`` truncated to ``[sigma_min, sigma_max]`` (as BESO does). Acting
integrates the probability-flow ODE from pure noise ``N(0, sigma_max^2)`` down to ``sigma = 0`` in a few
steps (BESO: as few as 3), on a configurable schedule:

* ``"karras"``: ``(sigma_max^(1/7) + t (sigma_min^(1/7) - sigma_max^(1/7)))^7`` for ``t`` in [0, 1];
* ``"exponential"``: evenly spaced in ``log sigma``;
* ``"linear"``: evenly spaced in ``sigma``.

``sampler="euler"`` is the deterministic (DDIM-like) Euler step of the ODE; ``"ancestral"`` re-injects
noise at every step. The noise at the start is what makes two calls on the same observation land in
different modes, so a multimodal demonstration set is reproduced rather than averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

SCHEDULES = ("karras", "exponential", "linear")
SAMPLERS = ("euler", "ancestral")
KARRAS_RHO = 7.0
TRAIN_LOGISTIC_SCALE = 0.5


def noise_schedule(schedule: str, steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """``steps + 1`` noise levels ``(steps + 1,)``: ``steps`` decreasing from ``sigma_max`` to ``sigma_min``, then 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"diffusion schedule: expected one of {SCHEDULES}, got {schedule!r}")
    if steps < 1:
        raise ValueError(f"diffusion sampling steps: expected >= 1, got {steps}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    if schedule == "karras":
        lo, hi = sigma_min ** (1 / KARRAS_RHO), sigma_max ** (1 / KARRAS_RHO)
        sigmas = (hi + t * (lo - hi)) ** KARRAS_RHO
    elif schedule == "exponential":
        sigmas = torch.exp(math.log(sigma_max) + t * (math.log(sigma_min) - math.log(sigma_max)))
    else:
        sigmas = sigma_max + t * (sigma_min - sigma_max)
    if steps == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).float()


class DiffusionHead(nn.Module):
    """``features (B, F) -> action (B, D)`` by few-step denoising (see module docstring).

    Args:
        in_dim: Width ``F`` of the observation features the denoiser is conditioned on.
        action_dim: Width ``D`` of the (flattened, normalized) action.
        hidden_sizes: Widths of the denoiser MLP (SiLU activations).
        sigma_data: Standard deviation of the (normalized) actions, used by the preconditioning.
        sigma_min, sigma_max: Range of noise levels for training and sampling.
        sampling_steps: Denoising steps at inference (each is one call of the denoiser).
        schedule: ``"karras"``, ``"exponential"`` or ``"linear"`` spacing of the sampling noise levels.
        sampler: ``"euler"`` (deterministic ODE step) or ``"ancestral"`` (stochastic).
    """

    sigmas: Tensor

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256, 256),
        sigma_data: float = 0.5,
        sigma_min: float = 0.001,
        sigma_max: float = 80.0,
        sampling_steps: int = 5,
        schedule: str = "exponential",
        sampler: str = "euler",
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"diffusion sampler: expected one of {SAMPLERS}, got {sampler!r}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"diffusion sigmas: expected 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.action_dim = action_dim
        self.sigma_data = sigma_data
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sampling_steps = sampling_steps
        self.schedule = schedule
        self.sampler = sampler
        self.register_buffer("sigmas", noise_schedule(schedule, sampling_steps, sigma_min, sigma_max), persistent=False)
        self.noise_embedding = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, 32))
        layers: list[nn.Module] = []
        width = in_dim + action_dim + 32
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.SiLU()]
            width = size
        layers.append(nn.Linear(width, action_dim))
        self.net = nn.Sequential(*layers)

    def denoise(self, features: Tensor, noisy: Tensor, sigma: Tensor, step: int | None = None) -> Tensor:
        """``D(noisy; sigma)``: the estimate ``(B, D)`` of the clean action; ``sigma`` is ``(B,)``.

        ``step`` is the index of ``sigma`` in the sampling schedule when sampling, None in training (a
        mixture-of-experts denoiser runs the experts it cached for that step; the dense MLP ignores it)."""
        s = sigma[:, None]
        total = s.square() + self.sigma_data**2
        c_skip = self.sigma_data**2 / total
        c_out = s * self.sigma_data / total.sqrt()
        c_in = 1 / total.sqrt()
        c_noise = s.log() / 4
        out = self.network(torch.cat([features, c_in * noisy, self.noise_embedding(c_noise)], dim=-1), step)
        return c_skip * noisy + c_out * out

    def network(self, inputs: Tensor, step: int | None) -> Tensor:
        """``F`` on its inputs ``(B, F + D + 32)`` (features, scaled noisy action, noise embedding): ``(B, D)``."""
        return self.net(inputs)

    def training_sigmas(self, n: int, device: torch.device) -> Tensor:
        """``(n,)`` noise levels from BESO's truncated log-logistic density.

        ``log sigma`` is logistic with location ``log sigma_data`` and scale 0.5, truncated to
        ``[sigma_min, sigma_max]``: most training goes to the noise levels where the modes separate.
        """

        def cdf(sigma: float) -> float:
            return 1 / (1 + math.exp(-(math.log(sigma) - math.log(self.sigma_data)) / TRAIN_LOGISTIC_SCALE))

        lo, hi = cdf(self.sigma_min), cdf(self.sigma_max)
        u = lo + torch.rand(n, device=device) * (hi - lo)
        return torch.exp(math.log(self.sigma_data) + TRAIN_LOGISTIC_SCALE * torch.logit(u))

    def loss(self, features: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """EDM-weighted denoising error of ``actions`` ``(B, D)`` at noise levels from :meth:`training_sigmas`."""
        sigma = self.training_sigmas(actions.shape[0], actions.device)
        noisy = actions + sigma[:, None] * torch.randn_like(actions)
        denoised = self.denoise(features, noisy, sigma)
        # lambda(sigma) = 1 / c_out^2 makes every noise level contribute on the same scale.
        weight = (sigma.square() + self.sigma_data**2) / (sigma * self.sigma_data).square()
        loss = (weight[:, None] * (denoised - actions).square()).mean()
        return loss, {"denoise_loss": float(loss.detach())}

    def noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """The random draws ``sample`` makes, by name, each ``(B, *shape)``: ``noise`` ``(B, n, D)``, the
        initial noise then (ancestral sampler) the noise of each step but the last, all N(0, 1)."""
        draws = 1 + (self.sampling_steps - 1 if self.sampler == "ancestral" else 0)
        return {"noise": (draws, self.action_dim)}

    def draw_noise(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The draws of :meth:`noise_shapes`, from ``generator`` (torch's global one if None)."""
        ((draws, _),) = self.noise_shapes().values()
        noise = [torch.randn(batch_size, self.action_dim, generator=generator, device=device) for _ in range(draws)]
        return {"noise": torch.stack(noise, dim=1)}

    def sample_with(self, features: Tensor, noise: dict[str, Tensor]) -> Tensor:
        """The action ``(B, D)`` ``sample`` returns when its random draws are ``noise`` (see :meth:`draw_noise`)."""
        b = features.shape[0]
        sigmas = self.sigmas.to(features.device)
        draws = noise["noise"]
        x = draws[:, 0] * sigmas[0]
        steps = len(sigmas) - 1
        for i in range(steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = self.denoise(features, x, sigma.expand(b), step=i)
            slope = (x - denoised) / sigma
            if self.sampler == "euler":
                x = x + slope * (sigma_next - sigma)
                continue
            sigma_up = torch.minimum(sigma_next, (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt())
            sigma_down = (sigma_next**2 - sigma_up**2).sqrt()
            x = x + slope * (sigma_down - sigma)
            if i < steps - 1:  # sigma_next > 0: every level but the last is >= sigma_min > 0
                x = x + draws[:, 1 + i] * sigma_up
        return x

    def sample(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """An action ``(B, D)``: ``sampling_steps`` denoising steps from ``N(0, sigma_max^2)``."""
        return self.sample_with(features, self.draw_noise(features.shape[0], features.device, generator))

"""Configuration of the forward dynamics model (``o_t, a_t -> o_{t+1}``) that model-based replay selection rolls
out (:mod:`clonekit.continual`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from clonekit.config import check
from clonekit.errors import ConfigError
from clonekit.policies.from_data import auto_normalize_obs, check_fits_shape, is_image_shape, resolve_auto

ACTION_SPACE_TYPES = ("Discrete", "Box")


@dataclass(frozen=True)
class DynamicsConfig:
    """Forward dynamics: predict the next observation ``o_{t+1}`` from ``o_t`` and the action ``a_t``.

    Args:
        obs_shape: Shape of one observation, ``(C, H, W)`` for grid maps or ``(D,)`` for vectors. Filled in
            from the dataset.
        action_space: The dataset's action space as stored in ``meta.json``: a Discrete action enters as a
            one-hot vector, a Box action as it is. Filled in from the dataset.

        encoder: ``"conv"`` for ``(C, H, W)`` maps (3x3 convolutions at full resolution over the map with the
            action broadcast as extra channels: a move changes the map locally), ``"mlp"`` for any shape (the
            flattened observation and the action), or ``"auto"``: ``"conv"`` for maps, else ``"mlp"``.
        conv_channels: Output channels of each conv layer (``"conv"``).
        hidden_sizes: Widths of the MLP layers (``"mlp"``).
        normalize_obs: ``"per_channel"``, ``"per_feature"``, ``"none"`` or ``"auto"`` (as in ``bc``); the model
            predicts the change ``o_{t+1} - o_t`` in units of its own fitted spread, stored with the weights.
    """

    obs_shape: tuple[int, ...]
    action_space: dict[str, Any]

    encoder: Literal["auto", "conv", "mlp"] = "auto"
    conv_channels: tuple[int, ...] = (32, 32, 32)
    hidden_sizes: tuple[int, ...] = (256, 256)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "positive dims",
            self.obs_shape,
        )
        kind = self.action_space.get("type")
        check(kind in ACTION_SPACE_TYPES, "action_space", "a Discrete or Box space (meta.json spaces['action'])", kind)
        if kind == "Discrete":
            n = self.action_space.get("n")
            check(isinstance(n, int) and n >= 2, "action_space", "Discrete with n >= 2", self.action_space)
        else:
            shape = self.action_space.get("shape")
            check(
                isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 1,
                "action_space",
                "a Box of shape [D] with D >= 1",
                self.action_space,
            )
        resolve_auto(self, "encoder", "conv" if is_image_shape(self.obs_shape) else "mlp")
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        check(self.encoder in ("conv", "mlp"), "encoder", "'auto', 'conv' or 'mlp'", self.encoder)
        check_fits_shape(self.obs_shape, self.encoder, self.normalize_obs)
        check(
            self.encoder == "mlp" or 1 <= len(self.conv_channels) <= 16,
            "conv_channels",
            "1 to 16 layers with encoder 'conv'",
            self.conv_channels,
        )
        check(
            all(0 < c <= 4096 for c in self.conv_channels), "conv_channels", "widths in [1, 4096]", self.conv_channels
        )
        check(
            len(self.hidden_sizes) <= 16 and all(0 < h <= 65536 for h in self.hidden_sizes),
            "hidden_sizes",
            "at most 16 widths in [1, 65536]",
            self.hidden_sizes,
        )
        check(
            self.normalize_obs in ("none", "per_feature", "per_channel"),
            "normalize_obs",
            "auto|none|per_feature|per_channel",
            self.normalize_obs,
        )

    @property
    def discrete(self) -> bool:
        """Whether the actions are Discrete (else Box)."""
        return self.action_space.get("type") == "Discrete"

    @property
    def action_dim(self) -> int:
        """Size of the action input: the number of actions (one-hot) or the Box's dimension."""
        return int(self.action_space["n"]) if self.discrete else int(self.action_space["shape"][0])


def action_space_of(dataset_spaces: dict[str, Any], where: str) -> dict[str, Any]:
    """``meta.json`` ``spaces['action']`` of a dataset, or a one-line ``ConfigError`` naming ``where``."""
    space = dataset_spaces.get("action")
    if not isinstance(space, dict) or space.get("type") not in ACTION_SPACE_TYPES:
        raise ConfigError(
            f"{where}: the dynamics model needs meta.json spaces['action'] (Discrete or Box), found {space!r}"
        )
    return dict(space)

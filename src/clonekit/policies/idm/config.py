"""Configuration of the inverse dynamics model (IDM) that labels observation-only datasets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from clonekit.config import check
from clonekit.data import ARRAY_DTYPES
from clonekit.errors import ConfigError
from clonekit.policies.from_data import auto_normalize_obs, check_fits_shape, is_image_shape, resolve_auto

ACTION_SPACE_TYPES = ("Discrete", "Box")


@dataclass(frozen=True)
class IDMConfig:
    """Inverse dynamics: predict the action ``a_t`` from the observations around it, ``o_{t-before} ..
    o_{t+after}`` (VPT, Baker et al. 2022), to label datasets that have observations but no actions.

    Args:
        obs_shape: Shape of one observation, ``(C, H, W)`` for grid maps or ``(D,)`` for vectors. Filled in
            from the dataset.
        obs_dtype: Dtype of the dataset's ``obs`` stream; ``clonekit label`` refuses data of another dtype or
            shape. Filled in from the dataset.
        action_space: The dataset's action space as stored in ``meta.json`` (``{"type": "Discrete", "n": 4,
            ...}`` or ``{"type": "Box", "shape": [...], "low": ..., "high": ...}``): Discrete actions get a
            categorical head (cross-entropy; labels are the argmax), Box actions a regression head (MSE on
            normalized actions; labels are clipped to the bounds). Filled in from the dataset.

        before: Observations before ``t`` the model sees (0: none).
        after: Observations after ``t`` the model sees (1: ``o_{t+1}``, the classic ``(o_t, o_{t+1})`` pair).
            Windows are clipped to the episode: past its last step the last observation repeats (the dataset
            stores no observation after the last action), as it does before the first step.
        encoder: For ``(C, H, W)`` observations ``"conv_pool"`` (3x3 convolutions at full resolution, a max
            over positions, then an MLP: the same move is recognized anywhere in the map) or ``"conv"`` (as
            ``bc``'s: strided convolutions then an MLP over positions); ``"mlp"`` for any shape; ``"auto"``:
            ``"conv_pool"`` for ``(C, H, W)`` observations, else ``"mlp"``.
        conv_channels: Output channels of each conv layer (with ``"conv"`` the second and later use stride 2).
        hidden_sizes: Widths of the MLP layers after the conv stack (or of the whole MLP encoder).
        normalize_obs: ``"per_channel"``, ``"per_feature"``, ``"none"`` or ``"auto"`` (as in ``bc``); the
            statistics are fitted on the training data and stored with the weights.
    """

    obs_shape: tuple[int, ...]
    action_space: dict[str, Any]
    obs_dtype: str = "float32"

    before: int = 0
    after: int = 1
    encoder: Literal["auto", "conv_pool", "conv", "mlp"] = "auto"
    conv_channels: tuple[int, ...] = (32, 64)
    hidden_sizes: tuple[int, ...] = (256,)
    normalize_obs: Literal["auto", "none", "per_feature", "per_channel"] = "auto"

    def __post_init__(self) -> None:
        check(
            len(self.obs_shape) >= 1 and all(d > 0 for d in self.obs_shape),
            "obs_shape",
            "positive dims",
            self.obs_shape,
        )
        check(self.obs_dtype in ARRAY_DTYPES, "obs_dtype", f"one of {list(ARRAY_DTYPES)}", self.obs_dtype)
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
        check(0 <= self.before <= 16, "before", "in [0, 16]", self.before)
        check(0 <= self.after <= 16, "after", "in [0, 16]", self.after)
        both = (self.before, self.after)
        check(sum(both) >= 1, "before, after", "at least one observation besides o_t (before + after >= 1)", both)
        resolve_auto(self, "encoder", "conv_pool" if is_image_shape(self.obs_shape) else "mlp")
        resolve_auto(self, "normalize_obs", auto_normalize_obs(self.obs_shape))
        encoders = ("conv_pool", "conv", "mlp")
        check(self.encoder in encoders, "encoder", "'auto', 'conv_pool', 'conv' or 'mlp'", self.encoder)
        check_fits_shape(self.obs_shape, "conv" if self.encoder == "conv_pool" else self.encoder, self.normalize_obs)
        check(
            self.encoder == "mlp" or 1 <= len(self.conv_channels) <= 16,
            "conv_channels",
            f"1 to 16 layers with encoder {self.encoder!r}",
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
    def window(self) -> int:
        """Observations per input: ``before + 1 + after``."""
        return self.before + 1 + self.after

    @property
    def num_outputs(self) -> int:
        """Logits (Discrete) or action dimensions (Box) the head produces."""
        if self.discrete:
            return int(self.action_space["n"])
        return int(self.action_space["shape"][0])


def action_space_of(dataset_spaces: dict[str, Any], where: str) -> dict[str, Any]:
    """``meta.json`` ``spaces['action']`` of a dataset, or a one-line ``ConfigError`` naming ``where``."""
    space = dataset_spaces.get("action")
    if not isinstance(space, dict) or space.get("type") not in ACTION_SPACE_TYPES:
        raise ConfigError(
            f"{where}: the inverse dynamics model needs meta.json spaces['action'] (Discrete or Box), found {space!r}"
        )
    return dict(space)

"""Configuration of style-conditioned behaviour cloning."""

from __future__ import annotations

from dataclasses import dataclass

from clonekit.config import check
from clonekit.errors import ConfigError
from clonekit.policies.continuous_bc.config import ContinuousBCConfig

MAX_STYLES = 4096


@dataclass(frozen=True)
class StyleBCConfig(ContinuousBCConfig):
    """Style-conditioned BC: :class:`ContinuousBCConfig` whose policy also reads a style id per step.

    Args:
        style_stream: The int stream holding each step's style id in ``[0, num_styles)`` (e.g. the Avoiding
            expert's path, ``style``). At evaluation the asked style is given under the same name.
        num_styles: Number of style ids; filled in from the dataset's ``style`` stream (its largest id + 1).
            With another ``style_stream``, give it.

    Every other field is as in :class:`ContinuousBCConfig` (observations must be vectors: the one-hot style
    joins the flattened observation before the MLP encoder; no goal input).
    """

    style_stream: str = "style"
    num_styles: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            bool(self.style_stream) and self.style_stream not in ("obs", "action"),
            "style_stream",
            "the name of an int stream other than 'obs' and 'action'",
            self.style_stream,
        )
        if self.num_styles == 0:  # not given, and no 'style' stream to fill it in from
            raise ConfigError(
                "num_styles: expected the number of style ids, filled in from the dataset's 'style' stream, but the "
                "policy needs stream 'style', which the dataset lacks (or name another int stream with "
                "style_stream and give num_styles)"
            )
        check(2 <= self.num_styles <= MAX_STYLES, "num_styles", f"in [2, {MAX_STYLES}]", self.num_styles)
        check(self.encoder == "mlp", "encoder", "'mlp' or 'auto' (the style joins the flattened obs)", self.encoder)
        check(not self.goal_shape, "goal_shape", "() (style_bc reads no goal)", self.goal_shape)

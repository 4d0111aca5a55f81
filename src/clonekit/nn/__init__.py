"""Building blocks shared by policies: encoders, normalizers and action heads."""

from clonekit.nn.encoders import ConvEncoder, MLPEncoder
from clonekit.nn.heads import CategoricalHead
from clonekit.nn.normalize import Normalizer

__all__ = ["CategoricalHead", "ConvEncoder", "MLPEncoder", "Normalizer"]

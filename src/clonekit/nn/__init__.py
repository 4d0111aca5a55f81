"""Building blocks shared by policies: encoders, normalizers and action heads."""

from clonekit.nn.binned import BinnedHead
from clonekit.nn.chunking import ActionChunker, ChunkQueue
from clonekit.nn.diffusion import DiffusionHead
from clonekit.nn.encoders import ConvEncoder, MLPEncoder
from clonekit.nn.gaussian import GaussianHead
from clonekit.nn.gmm import GMMHead
from clonekit.nn.heads import CategoricalHead
from clonekit.nn.normalize import Normalizer

__all__ = [
    "ActionChunker",
    "BinnedHead",
    "CategoricalHead",
    "ChunkQueue",
    "ConvEncoder",
    "DiffusionHead",
    "GMMHead",
    "GaussianHead",
    "MLPEncoder",
    "Normalizer",
]

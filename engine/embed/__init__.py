"""Sounds-like embeddings: a compact torch CNN over log-mel windows.

Importing ``engine.embed`` imports torch; ``engine`` itself does not.
"""

from engine.embed.model import (
    DEFAULT_WEIGHTS,
    EMBED_DIM,
    HOP_S,
    Embedder,
    ModelConfig,
    SoundsLikeNet,
    frame_windows,
    load_model,
    mean_vector,
    save_model,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "EMBED_DIM",
    "HOP_S",
    "Embedder",
    "ModelConfig",
    "SoundsLikeNet",
    "frame_windows",
    "load_model",
    "mean_vector",
    "save_model",
]

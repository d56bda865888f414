"""Image Analogy Explainer: A is to B as C is to what?, answered over convnet activations and over
caption embeddings, with an honest account of when the answer is real and when it cheats.

The library is numpy-in, numpy-out. Only :mod:`pipeline.models` imports torch, transformers,
sentence-transformers or onnxruntime; only :mod:`pipeline.index` imports faiss.
"""

__version__ = "0.1.0"

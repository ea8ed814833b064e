"""Sentence meaning on the bear: all-MiniLM-L6-v2 run as a numpy forward pass (no torch).

``load_embedder(settings)`` gives an :class:`Embedder` (or None when the model files are not
installed: the bear then runs on rules alone). ``Embedder.encode(texts)`` returns one
L2-normalised 384-dimensional vector per text; the cosine of two texts is their dot product.
"""

from agent.semantic.embedder import Embedder, load_embedder
from agent.semantic.errors import ModelFilesError

__all__ = ["Embedder", "ModelFilesError", "load_embedder"]

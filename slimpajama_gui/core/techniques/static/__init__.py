"""Static embeddings: distill an encoder into one vector per token plus a linear head.

:mod:`.vectors` makes the vectors with Model2Vec's recipe (the ``model2vec`` package);
:mod:`.model` is :class:`StaticClassifier` (lookup → mean → linear), its storage as
float32, float16 or int8 with per-row scales, and its folder format. Training the head
(and the vectors) on the task goes through the one training loop, with the teacher's
logits as soft labels (``core/jobs/handlers/static.py``).
"""

from slimpajama_gui.core.techniques.static.model import (
    STATIC_KEY,
    STORAGES,
    StaticClassifier,
    StaticEmbedding,
    is_static_config,
    is_static_folder,
    quantize_rows,
)
from slimpajama_gui.core.techniques.static.vectors import skip_token_ids, token_vectors

__all__ = [
    "STATIC_KEY",
    "STORAGES",
    "StaticClassifier",
    "StaticEmbedding",
    "is_static_config",
    "is_static_folder",
    "quantize_rows",
    "skip_token_ids",
    "token_vectors",
]

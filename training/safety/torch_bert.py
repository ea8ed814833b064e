"""all-MiniLM-L6-v2's encoder in torch, for training only: the same tensors and the same
arithmetic as agent/semantic/bert.py (post-layer-norm BERT, exact GELU), batched and
multi-threaded, to compute the token states the classifier head is trained on. The bear never
imports this (it runs agent/semantic/bert.py, numpy)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 - torch's own convention


class TorchBert:
    """Token ids in, last-layer token states out (float32)."""

    def __init__(self, tensors: dict[str, np.ndarray], hidden: int, heads: int, layers: int,
                 eps: float) -> None:
        self.t = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()
                  if v.dtype != np.int64}
        self.hidden, self.heads, self.layers, self.eps = hidden, heads, layers, eps

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.t[name + ".weight"], self.t[name + ".bias"])

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (self.hidden,), self.t[name + ".weight"], self.t[name + ".bias"],
                            self.eps)

    @torch.no_grad()
    def states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(n, length, hidden) token states of a padded batch."""
        t = self.t
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask).float()
        n, length = ids_t.shape
        x = (t["embeddings.word_embeddings.weight"][ids_t]
             + t["embeddings.position_embeddings.weight"][:length][None]
             + t["embeddings.token_type_embeddings.weight"][0][None, None])
        x = self._ln(x, "embeddings.LayerNorm")
        additive = (1.0 - mask_t[:, None, None, :]) * torch.finfo(torch.float32).min
        dim = self.hidden // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(y: torch.Tensor) -> torch.Tensor:
                return y.view(n, length, self.heads, dim).transpose(1, 2)

            q = split(self._lin(x, p + "attention.self.query"))
            k = split(self._lin(x, p + "attention.self.key"))
            v = split(self._lin(x, p + "attention.self.value"))
            scores = q @ k.transpose(-1, -2) / float(np.sqrt(dim)) + additive
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, self.hidden)
            x = self._ln(self._lin(context, p + "attention.output.dense") + x,
                         p + "attention.output.LayerNorm")
            inner = F.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(self._lin(inner, p + "output.dense") + x, p + "output.LayerNorm")
        return x.numpy()

"""The classifier head in torch (training only); agent/safety/classifier.py's
``head_forward`` is its numpy twin at run time, array for array."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class AttentionHead(nn.Module):
    """Attention pooling (``heads`` queries over tanh scores) + mean pooling -> GELU MLP."""

    def __init__(self, dim: int, attention_hidden: int, heads: int, mlp_hidden: int,
                 classes: int, dropout: float) -> None:
        super().__init__()
        self.att = nn.Linear(dim, attention_hidden)
        self.att_v = nn.Linear(attention_hidden, heads, bias=False)
        self.fc1 = nn.Linear(dim * (heads + 1), mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits for a padded batch: states (n, L, dim), mask (n, L) of 0/1."""
        scores = self.att_v(torch.tanh(self.att(states)))  # (n, L, heads)
        scores = scores.masked_fill(mask[..., None] == 0, float("-inf"))
        weights = scores.softmax(dim=1)
        pooled = torch.einsum("nlh,nld->nhd", weights, states).flatten(1)
        mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        hidden = nn.functional.gelu(self.fc1(self.drop(torch.cat([pooled, mean], dim=1))))
        return self.fc2(self.drop(hidden))

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights as classifier.head_forward reads them (x @ W layout)."""
        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float32)
        return {"att_w": host(self.att.weight.T), "att_b": host(self.att.bias),
                "att_v": host(self.att_v.weight.T), "w1": host(self.fc1.weight.T),
                "b1": host(self.fc1.bias), "w2": host(self.fc2.weight.T),
                "b2": host(self.fc2.bias)}


class MeanLinear(nn.Module):
    """The baseline the trial measured: logistic regression on the mean-pooled states."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits for a padded batch."""
        mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.fc(mean)


def make_head(kind: str, dim: int, classes: int, config: dict) -> nn.Module:
    """The head of ``kind``: "attention" (the bear's), "mean-mlp" (no attention pooling) or
    "mean-linear" (logistic regression on the mean) — the last two only for comparison."""
    if kind == "mean-linear":
        return MeanLinear(dim, classes)
    heads = config["attention_heads"] if kind == "attention" else 0
    return AttentionHead(dim, config["attention_hidden"], heads, config["mlp_hidden"], classes,
                         config["dropout"])

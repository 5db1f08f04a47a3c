"""Class-label embedding with label dropout for classifier-free guidance (Section 3.2, 2).

Classifier-free guidance needs one network that predicts both ``eps(x_t, t, y)`` and the
unconditional ``eps(x_t, t, null)``. During training each label is replaced by a learned "null"
class with probability ``class_dropout_prob`` (0.1 in the paper). The null class is simply one
extra row at the END of the embedding table: id ``num_classes``.
"""
from __future__ import annotations

import torch
from torch import nn


def drop_labels(y: torch.Tensor, drop_prob: float, num_classes: int,
                force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Replace some labels by the null class id ``num_classes``.

    Args:
        y: integer labels, shape ``(N,)``.
        drop_prob: probability of dropping each label (independently) when ``force_drop_ids``
            is None; draw one ``torch.rand(N)`` on ``y``'s device and drop where it is
            ``< drop_prob``.
        num_classes: the number of real classes; the null class id is ``num_classes``.
        force_drop_ids: optional ``(N,)`` tensor; if given, drop exactly where it equals 1
            (no randomness) -- this is how guidance builds the unconditional half of a batch.

    Returns:
        a new ``(N,)`` label tensor (``y`` is not modified).
    """
    # BEGIN SOLUTION ch04 difficulty=1 minutes=15
    if force_drop_ids is None:
        drop = torch.rand(y.shape[0], device=y.device) < drop_prob
    else:
        drop = torch.as_tensor(force_drop_ids, device=y.device) == 1
    # dropped -> null class id num_classes (the last row of the embedding table)
    return torch.where(drop, torch.full_like(y, num_classes), y)
    # END SOLUTION


class LabelEmbedder(nn.Module):
    """Labels -> ``(N, D)`` vectors; in training mode drops labels to the null class.

    The table has ``num_classes + 1`` rows when ``dropout_prob > 0`` (the last row is the null
    class), as in the official DiT (state-dict key ``y_embedder.embedding_table``).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = int(dropout_prob > 0)
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, y: torch.Tensor, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        # drop only while training (or when the caller forces it), never at evaluation
        if (self.training and self.dropout_prob > 0) or force_drop_ids is not None:
            y = drop_labels(y, self.dropout_prob, self.num_classes, force_drop_ids)
        # (N,) -> (N, D)
        return self.embedding_table(y)

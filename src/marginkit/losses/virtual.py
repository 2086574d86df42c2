"""Virtual Softmax (Chen et al., NeurIPS 2018): a virtual negative class per sample."""

from __future__ import annotations

from marginkit.losses.head import MarginHead

__all__ = ["VirtualSoftmax"]


class VirtualSoftmax(MarginHead):
    """Softmax over ``W_j . x`` plus one extra logit ``||W_y|| ||x||`` (the virtual class
    ``W_virt = ||W_y|| x / ||x||``), present in training only.

    The gradient flows through the virtual logit, including the radial "coupling decay"
    term on ``||W_y||``; the logit is not clipped (clipping is not the paper's loss).

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    geometry = "unnormalized"
    virtual_class = True

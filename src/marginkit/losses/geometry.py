"""The geometry around the margin: which vectors are normalised, and the radial factor.

Every head builds its logits from two operands (``docs/losses.md``, "Geometry"):

- the *rows* ``r_i``, (B, D): the embeddings on a sphere of radius ``s``, ``s x_i / ||x_i||``
  (NormFace, Wang et al., 2017), or the raw embeddings ``x_i``;
- the class weights ``W_j``, (C, D): normalised, ``W_j / ||W_j||`` (A-Softmax, Liu et al.,
  CVPR 2017), or raw, with an optional bias ``b_j``.

The plain logit of class ``j`` is ``r_i . W_j / ||W_j|| = ||r_i|| cos(theta_ij)`` (clamped to
``+-||r_i||``, i.e. the cosine to ``[-1, 1]``) or ``r_i . W_j + b_j``. A margin replaces the
target logit by ``rho_i f(cos theta_iy)``, with the *radial factor* ``rho_i = ||r_i||``
(``s``, or ``||x_i||``) for normalised weights and ``||r_i|| ||W_y||`` for raw ones. The three
geometries:

======================  ================  ==============  ==================
name                    rows              class weights   radial factor
======================  ================  ==============  ==================
``normalized``          ``s x / ||x||``   ``W / ||W||``   ``s``
``weight_normalized``   ``x``             ``W / ||W||``   ``||x||``
``unnormalized``        ``x``             ``W`` (+ b)     ``||W_y|| ||x||``
======================  ================  ==============  ==================

:class:`Geometry` states these rules once: the reference path of a head
(:meth:`~marginkit.losses.head.MarginHead.margin_logits`), its fused path
(:mod:`marginkit.losses.fused`), its inference scores and the margin plots all go through it.
An embedding without a direction (see :func:`~marginkit.losses.functional.directions`) has
rows 0 under the normalised geometry, so its radial factor is 0 as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from marginkit.losses.functional import directions, row_norms

__all__ = ["GEOMETRIES", "Geometry", "GeometryName"]

GeometryName = Literal["normalized", "weight_normalized", "unnormalized"]


@dataclass(frozen=True)
class Geometry:
    """The rules of one geometry: rows, plain scores, target cosine and radial factor.

    Attributes:
        name: the geometry's name (``MarginHead.geometry``).
        normalized_embeddings: rows ``s x / ||x||`` (True) or ``x`` (False).
        normalized_weights: class weights ``W_j / ||W_j||`` (True) or raw ``W_j`` with an
            optional bias (False).
    """

    name: GeometryName
    normalized_embeddings: bool
    normalized_weights: bool

    def rows(self, embeddings: Tensor, scale: Tensor | float | None) -> Tensor:
        """The left operand of every logit, (B, D): ``s x / ||x||`` or ``x``.

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
            scale: the scale ``s`` (a float, or a tensor if learned); None without
                normalised embeddings.
        """
        if not self.normalized_embeddings:
            return embeddings
        assert scale is not None, "normalised embeddings need a scale"
        factor = scale.to(embeddings.dtype) if isinstance(scale, Tensor) else scale
        return directions(embeddings, row_norms(embeddings)) * factor

    def scores(self, rows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Plain logits without margin, (B, C), composed with autograd (the reference path).

        ``rows_i . W_j / ||W_j||`` clamped to ``+-||rows_i||`` (``x . W_j / ||W_j||`` is
        differentiable at ``x = 0`` too), or ``rows_i . W_j + b_j``.

        Args:
            rows: (B, D) from :meth:`rows`.
            weight: (C, D) raw class weights.
            bias: (C,) class biases (raw weights only), or None.
        """
        if not self.normalized_weights:
            return F.linear(rows, weight, bias)
        bound = row_norms(rows)  # (B, 1): |z_ij| <= ||rows_i||, cosines in [-1, 1]
        return F.linear(rows, weight / row_norms(weight)).clamp(-bound, bound)

    def target_cosine_and_radial(
        self, rows: Tensor, target_weight: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Cosine of each row with its class weight, and the radial factor of its target logit.

        Both paths compute the target logit ``radial * f(cosine)`` from these, on (B, D)
        tensors only.

        Args:
            rows: (B, D) from :meth:`rows`.
            target_weight: (B, D) the raw weight of each row's class, ``W[labels]``.

        Returns:
            cosine: (B,) ``cos(theta_iy)``, clamped to ``[-1, 1]`` for normalised weights
                (0 for a row without a direction).
            radial: (B,) ``||rows_i||`` (normalised weights) or ``||rows_i|| ||W_y||``.
        """
        rows_norm = row_norms(rows)  # (B, 1): the radial factor s or ||x|| (0: no direction)
        weight_norm = row_norms(target_weight)  # (B, 1)
        cosine = (directions(rows, rows_norm) * (target_weight / weight_norm)).sum(dim=1)  # (B,)
        if self.normalized_weights:
            return cosine.clamp(-1.0, 1.0), rows_norm.squeeze(1)
        return cosine, (rows_norm * weight_norm).squeeze(1)

    def inference_scores(self, embeddings: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Scores without margin or scale, (B, C): ``cos(theta_ij)`` for normalised weights,
        ``x_i . W_j + b_j`` for raw ones.

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
            weight: (C, D) raw class weights.
            bias: (C,) class biases (raw weights only), or None.
        """
        if not self.normalized_weights:
            return F.linear(embeddings, weight, bias)
        unit_rows = directions(embeddings, row_norms(embeddings))  # (B, D)
        return F.linear(unit_rows, weight / row_norms(weight)).clamp(-1.0, 1.0)

    def radial_factor(self, scale: Tensor | float | None, embedding_norm: float) -> Tensor | float:
        """The radial factor of an embedding of norm ``embedding_norm`` and unit-norm class
        weights: the scale ``s`` for normalised embeddings, ``embedding_norm`` otherwise.

        Args:
            scale: the scale ``s``, or None without normalised embeddings.
            embedding_norm: ``||x||`` (standing for ``||W_y|| ||x||`` with raw weights).
        """
        if not self.normalized_embeddings:
            return embedding_norm
        if scale is None:
            raise ValueError(f"the {self.name} geometry needs a scale")
        return scale


#: The three geometries by name.
GEOMETRIES: dict[GeometryName, Geometry] = {
    "normalized": Geometry("normalized", normalized_embeddings=True, normalized_weights=True),
    "weight_normalized": Geometry(
        "weight_normalized", normalized_embeddings=False, normalized_weights=True
    ),
    "unnormalized": Geometry("unnormalized", normalized_embeddings=False, normalized_weights=False),
}

"""Pictures of margin losses and the embeddings they learn (matplotlib, PNG + SVG).

Every ``name(..., path)`` function draws one figure, writes ``<path>.png`` and
``<path>.svg`` and returns the two paths; ``build_name(...)`` returns the
``matplotlib.figure.Figure`` unsaved, for inspection or further editing. Figures are created
without ``pyplot`` (no global state); matplotlib is imported only when a figure is drawn.

- :func:`features_2d`, :func:`features_3d`: the embedding space by class.
- :func:`similarity_histograms`: intra- vs inter-class cosine similarity.
- :func:`target_logit_curves`, :func:`gradient_curves`: margin shapes from the heads.
- :func:`roc_curves`, :func:`learning_curves`: runs.
- :func:`label_noise_histograms`: clean vs flipped training labels.
"""

from marginkit.plots.features import (
    build_features_2d,
    build_features_3d,
    features_2d,
    features_3d,
)
from marginkit.plots.figures import save_figure
from marginkit.plots.histograms import (
    build_label_noise_histograms,
    build_similarity_histograms,
    label_noise_histograms,
    pair_similarities,
    similarity_histograms,
)
from marginkit.plots.margins import (
    build_gradient_curves,
    build_target_logit_curves,
    gradient_curves,
    loss_gradient,
    target_and_derivative,
    target_logit_curves,
)
from marginkit.plots.runs import (
    build_learning_curves,
    build_roc_curves,
    learning_curves,
    load_run_metrics,
    roc_curves,
)

__all__ = [
    "build_features_2d",
    "build_features_3d",
    "build_gradient_curves",
    "build_label_noise_histograms",
    "build_learning_curves",
    "build_roc_curves",
    "build_similarity_histograms",
    "build_target_logit_curves",
    "features_2d",
    "features_3d",
    "gradient_curves",
    "label_noise_histograms",
    "learning_curves",
    "load_run_metrics",
    "loss_gradient",
    "pair_similarities",
    "roc_curves",
    "save_figure",
    "similarity_histograms",
    "target_and_derivative",
    "target_logit_curves",
]

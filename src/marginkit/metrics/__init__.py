"""Measurements of a learned feature space: pure functions on tensors or numpy arrays.

- :mod:`~marginkit.metrics.closed_set`: top-1 accuracy, nearest-class-centre accuracy.
- :mod:`~marginkit.metrics.geometry`: compactness, separation and weight angles on the sphere.
- :mod:`~marginkit.metrics.roc`: ROC, AUC, EER, TAR at FAR.
- :mod:`~marginkit.metrics.verification`: pair scores, pair generation, LFW 10-fold, report.
- :mod:`~marginkit.metrics.open_set`: AUROC, OSCR, rank-1 (rank-k) and DIR at FAR.
- :mod:`~marginkit.metrics.retrieval`: precision@1, R-precision, MAP@R.
- :mod:`~marginkit.metrics.label_noise`: target angles and gradient magnitudes, clean vs flipped.
- :mod:`~marginkit.metrics.sphere`: unit rows, stable angles, class centres.

Inputs may be ``torch.Tensor`` or ``numpy.ndarray``; outputs are Python numbers, numpy arrays
or JSON-serialisable dicts. Errors name the offending argument and are raised before any
arithmetic (the checks of :mod:`marginkit._validation` and :mod:`marginkit._validation`).
"""

from marginkit.metrics.closed_set import nearest_centre_accuracy, top1_accuracy
from marginkit.metrics.geometry import angular_geometry
from marginkit.metrics.label_noise import (
    LabelNoiseSamples,
    label_noise_report,
    label_noise_samples,
    per_sample_gradient_norms,
    summarize_label_noise,
    target_angles,
)
from marginkit.metrics.open_set import (
    cosine_scores_to,
    dir_at_far,
    identification_report,
    known_unknown_auroc,
    open_set_report,
    oscr,
    rank1_accuracy,
    rank_accuracies,
    split_gallery_probe,
)
from marginkit.metrics.retrieval import retrieval_metrics
from marginkit.metrics.roc import (
    DEFAULT_FARS,
    OperatingPoint,
    RocCurve,
    auc,
    equal_error_rate,
    roc_curve,
    tar_at_far,
)
from marginkit.metrics.sphere import class_centres
from marginkit.metrics.verification import (
    Pairs,
    assign_folds,
    cosine_scores,
    lfw_ten_fold,
    make_pairs,
    pair_folds,
    verification_report,
)

__all__ = [
    "DEFAULT_FARS",
    "LabelNoiseSamples",
    "OperatingPoint",
    "Pairs",
    "RocCurve",
    "angular_geometry",
    "assign_folds",
    "auc",
    "class_centres",
    "cosine_scores",
    "cosine_scores_to",
    "dir_at_far",
    "equal_error_rate",
    "identification_report",
    "known_unknown_auroc",
    "label_noise_report",
    "label_noise_samples",
    "lfw_ten_fold",
    "make_pairs",
    "nearest_centre_accuracy",
    "open_set_report",
    "oscr",
    "pair_folds",
    "per_sample_gradient_norms",
    "rank1_accuracy",
    "rank_accuracies",
    "retrieval_metrics",
    "roc_curve",
    "split_gallery_probe",
    "summarize_label_noise",
    "tar_at_far",
    "target_angles",
    "top1_accuracy",
    "verification_report",
]

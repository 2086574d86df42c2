"""Closed-set classification: top-1 accuracy of a head's scores and of nearest class centres.

The nearest-class-centre classifier is the cosine classifier of NormFace (Wang et al., ACM MM
2017) with the class weights replaced by the class centres of the training embeddings.
"""

from __future__ import annotations

from marginkit._validation import (
    ArrayLike,
    as_labels,
    as_matrix,
    check_num_classes,
    check_same_length,
    labelled_sets,
)
from marginkit.metrics.sphere import normalize_rows, unit_class_centres

__all__ = ["nearest_centre_accuracy", "top1_accuracy"]


def top1_accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of rows whose highest score is at the true label.

    Ties go to the lowest class index (``argmax``'s rule).

    Args:
        logits: (N, C) scores, e.g. ``head.logits(embeddings)``.
        labels: (N,) integer labels in ``[0, C)``.

    Returns:
        Accuracy in [0, 1].
    """
    logits = as_matrix("logits", logits)
    labels = as_labels("labels", labels)
    check_same_length(logits=logits, labels=labels)
    if int(labels.max()) >= logits.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {logits.shape[1]}) (the columns of logits); "
            f"got a maximum of {int(labels.max())}"
        )
    return float((logits.argmax(dim=1) == labels).double().mean())


def nearest_centre_accuracy(
    train_embeddings: ArrayLike,
    train_labels: ArrayLike,
    test_embeddings: ArrayLike,
    test_labels: ArrayLike,
) -> float:
    """Accuracy of the cosine nearest-class-centre classifier.

    Each class centre is the normalised mean of that class's normalised training
    embeddings; a test embedding is assigned the class of the centre with the largest
    cosine. Test samples of a class absent from the training set count as errors.

    Args:
        train_embeddings: (N, D) training embeddings.
        train_labels: (N,) their labels (at least two classes).
        test_embeddings: (M, D) test embeddings.
        test_labels: (M,) their labels.

    Returns:
        Accuracy in [0, 1].
    """
    train_embeddings, train_labels, test_embeddings, test_labels = labelled_sets(
        "train", train_embeddings, train_labels, "test", test_embeddings, test_labels
    )
    check_num_classes("train_labels", train_labels)
    classes, centres = unit_class_centres(
        normalize_rows(train_embeddings, "train_embeddings"), train_labels
    )
    cosine = normalize_rows(test_embeddings, "test_embeddings") @ centres.T  # (M, K)
    predicted = classes[cosine.argmax(dim=1)]  # (M,)
    return float((predicted == test_labels).double().mean())

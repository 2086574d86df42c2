"""The tiny comparison grid the tests share: digits, a few steps per run."""

from __future__ import annotations

from marginkit.compare import CompareSpec

CLAIMS = [
    {
        "claim": "ArcFace beats softmax by a mile",
        "source": "a test",
        "paper": "+50 points",
        "check": "higher",
        "metric": "test_accuracy",
        "runs": ["arcface"],
        "baseline": "softmax",
        "tolerance": 50.0,
    },
    {
        "claim": "needs a face data set",
        "source": "a test",
        "check": "not_testable",
        "reason": "no faces in the digits",
    },
    {
        "claim": "a run that is not in the grid",
        "source": "a test",
        "check": "at_most",
        "metric": "test_error",
        "runs": ["cosface"],
        "value": 1.0,
    },
]


def tiny_spec(losses: str = "softmax,arcface", seeds: int = 2, **settings: object) -> CompareSpec:
    """Digits, mlp, 8-D, 2 epochs of at most 3 steps each, on 20 % of the training set."""
    values = {
        "dataset": "digits",
        "backbone": "mlp",
        "embedding_dim": 8,
        "epochs": 2,
        "max_steps": 6,
        "batch_size": 64,
        "train_fraction": 0.2,
        "threads": 1,
        "log_every": 0,
        **settings,
    }
    return CompareSpec.from_dict(
        {"title": "Tiny", "settings": values, "runs": losses, "seeds": seeds, "claims": CLAIMS}
    )

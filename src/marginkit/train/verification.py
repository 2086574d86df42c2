"""Verification during training: ``--verify FILE`` and ``--verify-every STEPS``.

Each verification file (an InsightFace ``.bin`` or an LFW-style pairs file,
:mod:`marginkit.pairs.files`) is read ONCE when the run is set up, for the run's input size
and normalisation (:func:`marginkit.data.preprocessing.preprocessing_of`, what
``RUN/preprocessing.json`` records), and scored every ``verify_every`` steps and at the end of
each epoch with flip test-time augmentation (:func:`marginkit.pairs.evaluate_pairs`: the
sum of the embeddings of an image and its mirror, as in ArcFace, Deng et al., CVPR 2019).

A verification leaves training as it was: the backbone is put in eval mode (batch norm uses
its running statistics and does not update them; dropout is off), no gradient is kept, no
random number is drawn, and the backbone's own mode is restored; a run with ``--verify``
therefore ends with bitwise the weights of the same run without it (on a CPU).

On several processes (``--nproc``) each rank embeds its share of the images, rank 0 scores
the pairs once from the embeddings of all, and every rank gets the figures
(:meth:`TrainingVerification.measure`): the figures are those of one process scoring the same
weights (``marginkit verify``), and the best checkpoint holds the whole head (gathered).

The best checkpoint (by ``verify_best``'s 10-fold accuracy; ties keep the earlier one) is
written like an epoch checkpoint (:func:`marginkit.train.checkpoint.save_checkpoint`,
atomically) as ``checkpoints/best-SSSSSSS`` (S: the step; ``best-SSSSSSS-2`` when a resumed
run scores that step again), then ``checkpoints/best`` names
it (an atomic rename), and only then is the previous best removed: at every moment the
pointer names a complete checkpoint. Epoch checkpoints are never touched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from marginkit.train.config import ConfigError, TrainConfig, verify_set_name
from marginkit.train.distributed import SINGLE, Distribution

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle
    from marginkit.train.checkpoint import ShardWriter

__all__ = [
    "BEST",
    "TrainingVerification",
    "VerifySet",
    "best_checkpoint_name",
    "find_verify_files",
    "load_verification",
    "save_best_checkpoint",
    "search_folders",
]

#: The file in ``RUN/checkpoints/`` naming the best checkpoint's folder.
BEST = "best"


@dataclass(frozen=True)
class VerifySet:
    """One verification file read for the run.

    Attributes:
        name: its name in logs (the file name without extension).
        file: the file as the config lists it.
        pairs: the pairs and their images, ready for the backbone
            (:class:`marginkit.pairs.PairSet`).
    """

    name: str
    file: str
    pairs: Any


def search_folders(config: TrainConfig, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where a verification file (and its images) may be, besides where it is given: the
    run's data folder (``data_dir``, else ``config.data_dir``), ``$MARGINKIT_DATA/<data set>``
    and ``$MARGINKIT_DATA/lfw``; those that exist, each once (``--verify`` and
    ``marginkit verify`` both look there)."""
    from marginkit.data import data_root

    own = data_dir if data_dir is not None else config.data_dir
    folders = [] if own is None else [Path(own).expanduser()]
    shared = data_root()
    if shared is not None:
        folders += [shared / config.dataset, shared / "lfw"]
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique and folder.is_dir():
            unique.append(folder)
    return unique


def find_verify_files(config: TrainConfig) -> list[Path]:
    """The files of ``config.verify``, found (fast: nothing is read).

    Raises:
        marginkit.data.DataError: a file is found nowhere (one line naming it).
    """
    from marginkit.pairs.files import find_pairs_file

    folders = search_folders(config)
    return [find_pairs_file(file, folders) for file in config.verify or []]


def _preprocessing(config: TrainConfig, bundle: DataBundle) -> Any:
    """The run's preprocessing (as ``RUN/preprocessing.json`` records it), which must be
    that of RGB images for verification files."""
    from marginkit.data.preprocessing import preprocessing_of

    found = preprocessing_of(bundle, config.dataset)
    if found is None or found.channels != "RGB":
        shape = tuple(bundle.input_shape)
        raise ConfigError(
            f"verify: verification needs a run on RGB images, input shape (3, H, W); "
            f"data set {config.dataset!r} gives {shape}"
        )
    return found


@dataclass
class TrainingVerification:
    """The verification sets of a run and what they have given so far.

    Attributes:
        sets: the files, read once.
        every: steps between verifications (0: at the end of each epoch only).
        best_set: the name of the set that picks the best checkpoint.
        batch_size: images per forward pass.
        best: the best verification so far, ``{"set", "accuracy", "step", "epoch",
            "checkpoint"}``, or None.
    """

    sets: list[VerifySet]
    every: int
    best_set: str
    batch_size: int
    best: dict[str, Any] | None = field(default=None)

    def columns(self) -> list[str]:
        """The ``steps.csv`` columns: ``verify_<name>_accuracy`` and ``_auc`` per set."""
        return [column for item in self.sets for column in verify_columns(item.name)]

    def due(self, step: int, last_of_epoch: bool) -> bool:
        """Whether to verify after optimiser step ``step``."""
        return last_of_epoch or (self.every > 0 and step % self.every == 0)

    def measure(
        self, backbone: nn.Module, part: Distribution = SINGLE
    ) -> dict[str, dict[str, float]]:
        """Each set's figures with flip TTA: ``{name: {"accuracy", "accuracy_std", "auc"}}``
        (fractions; the backbone's mode, statistics and the RNG untouched).

        On several processes (a collective: every rank calls it) each rank embeds its share
        of each set's images (:meth:`Distribution.rows`), rank 0 joins the embeddings in
        rank order and scores the pairs once, and every rank returns rank 0's figures, so
        every rank takes the same best-checkpoint decision.
        """
        from marginkit.pairs.evaluate import embed_pair_images, pairs_report

        figures: dict[str, dict[str, float]] | None = {}
        for item in self.sets:
            share = part.rows(item.pairs.num_images)  # every image for one process
            own = None
            if share.stop > share.start:
                own = embed_pair_images(
                    backbone, item.pairs, True, self.batch_size, images=share
                )  # (I_r, D)
            pieces = part.collect(own)  # rank 0: every rank's, in rank order
            if pieces is None or figures is None:  # another rank: rank 0 scores
                figures = None
                continue
            embeddings = torch.cat([piece for piece in pieces if piece is not None])  # (I, D)
            report = pairs_report(embeddings, item.pairs, flip=True)
            figures[item.name] = {
                "accuracy": float(report["ten_fold"]["mean"]),
                "accuracy_std": float(report["ten_fold"]["std"]),
                "auc": float(report["auc"]),
            }
        return dict(part.share(figures))

    def improves(self, figures: dict[str, dict[str, float]]) -> bool:
        """Whether ``figures`` beat the best so far on the chosen set (strictly)."""
        accuracy = figures[self.best_set]["accuracy"]
        return self.best is None or accuracy > self.best["accuracy"]

    def restore(self, history: list[dict[str, Any]]) -> None:
        """The best so far from a resumed run's history (its epochs' verifications)."""
        for row in history:
            for record in [*row.get("verification_steps", []), row.get("verification")]:
                if not record or self.best_set not in record.get("sets", {}):
                    continue
                if self.improves(record["sets"]):
                    self.best = {
                        "set": self.best_set,
                        "accuracy": record["sets"][self.best_set]["accuracy"],
                        "step": record["step"],
                        "epoch": row["epoch"],
                        "checkpoint": best_checkpoint_name(record["step"]),
                    }


def verify_columns(name: str) -> list[str]:
    """The log columns of a verification set: ``verify_<name>_accuracy``, ``_auc``."""
    return [f"verify_{name}_accuracy", f"verify_{name}_auc"]


def load_verification(
    config: TrainConfig, bundle: DataBundle, paths: list[Path], progress: bool = False
) -> TrainingVerification | None:
    """Read the run's verification files (once), or None when it has none.

    Args:
        config: the run's options (``verify``, ``verify_every``, ``verify_best``).
        bundle: the data the run trains on (its input size and normalisation).
        paths: the files, found by :func:`find_verify_files`.
        progress: show the decoding's progress.

    Raises:
        ConfigError: the run's inputs are not RGB images.
        marginkit.data.DataError: a file is damaged or malformed (one line naming it).
    """
    from marginkit.pairs.files import load_pair_set

    if not config.verify:
        return None
    preprocessing = _preprocessing(config, bundle)
    size = (preprocessing.input_shape[1], preprocessing.input_shape[2])
    folders = search_folders(config)
    sets = [
        VerifySet(
            verify_set_name(file),
            file,
            load_pair_set(
                path,
                size,
                preprocessing.mean,
                preprocessing.std,
                image_folders=folders,
                progress=progress,
            ),
        )
        for file, path in zip(config.verify, paths, strict=True)
    ]
    chosen = config.verify_best or config.verify[0]
    best = verify_set_name(chosen)
    return TrainingVerification(sets, config.verify_every, best, config.eval_batch_size)


def best_checkpoint_name(step: int) -> str:
    """The folder of the best checkpoint taken after optimiser step ``step``."""
    return f"best-{step:07d}"


def save_best_checkpoint(
    run_dir: Path,
    backbone: nn.Module,
    head: nn.Module | None,
    state: dict[str, Any],
    *,
    shards: ShardWriter | None = None,
) -> Path:
    """Write the best checkpoint (``state["step"]``) and point ``checkpoints/best`` at it;
    then remove the previous best (and the leftovers of an interrupted write). ``head``
    and ``shards``: as :func:`~marginkit.train.checkpoint.save_checkpoint`'s (the whole
    head, or every rank's shard files).

    Raises:
        OutputError: a file cannot be written; the previous best stays intact and named.
    """
    from marginkit.runfolder import RunFolder, atomic_write_text
    from marginkit.train.checkpoint import save_checkpoint

    root = RunFolder(run_dir).checkpoints
    name = best_checkpoint_name(int(state["step"]))
    copy = 1
    while (root / name).exists():  # a resumed run re-verifying the step ``best`` names:
        copy += 1  # a new folder, so the pointer never names a half-replaced one
        name = f"{best_checkpoint_name(int(state['step']))}-{copy}"
    folder = save_checkpoint(run_dir, backbone, head, state, name=name, shards=shards)
    atomic_write_text(root / BEST, name + "\n")
    for entry in root.iterdir():
        stale = entry.name.startswith(("best-", ".best-")) and entry.name != name
        if stale and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
    return folder

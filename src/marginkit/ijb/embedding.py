"""The IJB crops aligned with their landmarks and embedded, in batches read by workers.

Each crop is read whole (turned upright by its EXIF orientation, as OpenCV's ``imread`` in
the public evaluation reads it), aligned to the ArcFace five-point template by the similarity
transform of its five landmarks (:func:`marginkit.data.align.align_face`: 112x112 for a
model of 112x112 inputs; an ``S x S`` face for ``S x S`` inputs; for ``H x W`` inputs, an
``S = max(H, W)`` face centre-cropped to ``H x W``, SphereFace's 112x96 from the 112x112
face), then normalised as the model's training inputs were (its per-channel mean and
standard deviation; grey for a grey model). The model's centre crop is not applied: it is
for unaligned photos, and an aligned face is already the face.

With flip (the evaluation of ArcFace, as ``marginkit verify``), an image's embedding is the
sum of the embeddings of the face and of its horizontal mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from marginkit._validation import check_count
from marginkit.data.errors import DataError
from marginkit.data.stream import load_batches
from marginkit.export.embed import Embedder, embed_batch
from marginkit.progress import Progress

__all__ = ["AlignedFaces", "aligned_face", "embed_faces"]


def aligned_face(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A face aligned by its landmarks, at a model's input size.

    Args:
        image: ``(h, w, 3)`` uint8 RGB, the whole crop.
        landmarks: ``(5, 2)`` (x, y) pixels: eyes, nose tip, mouth corners.
        size: the model's input ``(H, W)``.

    Returns:
        ``(H, W, 3)`` uint8: the ``S x S`` aligned face, ``S = max(H, W)``, centre-cropped
        to ``H x W`` when the input is not square.
    """
    from PIL import Image

    from marginkit.data.align import align_face
    from marginkit.data.images import crop_box

    height, width = size
    side = max(height, width)
    face = align_face(image, landmarks, side)  # (S, S, 3)
    if height == width:
        return face
    box = crop_box(side, side, size)
    cropped = Image.fromarray(face).resize((width, height), Image.Resampling.BILINEAR, box=box)
    return np.array(cropped, dtype=np.uint8)


class AlignedFaces(Dataset):
    """The crops of a set, aligned: item ``i`` is ``(3, H, W)`` uint8 RGB.

    Args:
        folder: where the crops are (``loose_crop/``).
        names: the crops' names, relative to ``folder``.
        landmarks: ``(N, 5, 2)`` each crop's five landmarks.
        size: the model's input ``(H, W)``.
    """

    def __init__(
        self, folder: Path, names: Sequence[str], landmarks: np.ndarray, size: tuple[int, int]
    ) -> None:
        if landmarks.shape != (len(names), 5, 2):
            raise ValueError(
                f"landmarks: expected shape ({len(names)}, 5, 2), got {landmarks.shape}"
            )
        self.folder = folder
        self.names = list(names)
        self.landmarks = landmarks
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Tensor:
        from marginkit.data.images import read_rgb

        path = self.folder / self.names[index]
        image = read_rgb(path, str(path), upright=True)  # (h, w, 3)
        try:
            face = aligned_face(image, self.landmarks[index], self.size)
        except DataError as error:
            raise DataError(f"{path}: {error}") from None
        return torch.from_numpy(face).permute(2, 0, 1).contiguous()  # (3, H, W)


def embed_faces(
    embedder: Embedder,
    faces: AlignedFaces,
    *,
    flip: bool = True,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
    description: str = "embedding faces",
) -> np.ndarray:
    """Embed every face, in batches read by ``workers`` processes.

    Args:
        embedder: the model (:func:`marginkit.export.load_embedder`).
        faces: the aligned faces, at the model's input size.
        flip: add the embedding of each face's mirror.
        batch_size: faces per batch.
        workers: ``DataLoader`` processes reading and aligning the faces (0: this one).
        progress: show the progress with its ETA on stderr.
        description: the progress line's text.

    Returns:
        ``(N, D)`` float32, row for row with ``faces``.

    Raises:
        DataError: a crop that cannot be read or aligned (named), an embedding that is zero.
        ExportError: an exported model that fails, or an embedding not finite (named).
    """
    check_count("batch_size", batch_size, 1)
    check_count("workers", workers, 0)
    count = len(faces)
    output = np.empty((count, embedder.embedding_dim), dtype=np.float32)
    starts = range(0, count, batch_size)
    batches = [range(start, min(start + batch_size, count)) for start in starts]
    text = description + (" (and mirrors)" if flip else "")
    with Progress(count, text, enabled=progress, unit="img") as bar:
        for start, codes in zip(starts, load_batches(faces, batches, workers), strict=True):
            assert isinstance(codes, Tensor)  # (b, 3, H, W) uint8
            names = faces.names[start : start + codes.shape[0]]
            inputs = embedder.preprocessing.normalise(codes)  # (b, *input_shape)
            embeddings = embed_batch(embedder, inputs, names)  # (b, D)
            if flip:
                embeddings = embeddings + embed_batch(
                    embedder, torch.flip(inputs, dims=(-1,)), names
                )
            zero = embeddings.norm(dim=1) == 0  # (b,)
            if bool(zero.any()):
                name = names[int(torch.nonzero(zero)[0, 0])]
                raise DataError(f"{faces.folder / name}: its embedding is zero (no direction)")
            output[start : start + len(names)] = embeddings.to(torch.float32).numpy()
            bar.update(len(names))
    return output

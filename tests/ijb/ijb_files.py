"""A miniature IJB-C (or IJB-B) release written in the release's file formats, with known
answers (imported by the tests of marginkit.ijb).

**The design.** Every embedding lies on one circle, ``A (cos a P + sin a Q)`` for an angle
``a`` (degrees) and two orthonormal zero-mean vectors ``P``, ``Q`` of R^8, so the cosine of two
templates is the cosine of their angles' difference.

- Four subjects, each with one gallery template at 0, 90, 180 and 270 degrees: G1 holds
  subjects 1 and 2, G2 subjects 3 and 4. A gallery template is one media of two images at
  its angle +- 10 degrees (amplitudes 100 and 60): pooled, exactly its angle.
- Twenty probe templates, five per subject at :data:`PROBE_ANGLES`. A probe is two media:
  one photo at its angle + 15 degrees (detector score 0.9) and three frames of one video at
  its angle - 15 degrees (score 0.1): pooled per media then per template, exactly its
  angle (per image, 7.6 degrees off). The video's media id is that of its subject's
  gallery media, so pooling media across templates would mix them.
- The 1:1 pairs: every gallery template with every probe, 20 same-subject and 60 different.

**The answers** (unweighted pooling):

- 1:1: the seventh best of the 60 different-subject scores is cos(33 deg) = 0.839 (probe
  123 of subject 3 against subject 2 at 90), with six above it; the same-subject scores
  above it are those of the probes at 275, 260, 282 (subject 4), 16, 25 (subject 1), 67
  (subject 2) and 148 (subject 3), 7 of 20: TAR at FAR 0.1 is 0.35. Lower FARs need more
  than 60 negatives: not measurable.
- 1:N G1 (0 and 90 degrees): the probes at 47 (subject 1, nearer 90) and at 42 (subject 2,
  nearer 0) are missed: rank-1 8/10. The non-mated probes' best scores are 0.875 (331) and
  0.839 (123) then 0.629: at FPIR 0.1 (one false alarm of ten) the threshold is above
  0.839, and 3 of the 8 hits score higher (16, 25, 67): TPIR 0.3.
- 1:N G2 (180 and 270): 244 and 246 (subject 3, nearer 270) and 215 (subject 4, nearer 180)
  are missed: rank-1 7/10. Non-mated best scores 0.940 (160), 0.927 (292), then 0.857:
  hits above 0.927 are 275, 260, 282: TPIR 0.3.
- Means: rank-1 0.75, TPIR at FPIR 0.1 0.3; rank-5 and rank-10 are 1 (two subjects per
  gallery); FPIR 0.01 needs 100 non-mated probes: not measurable.

**The images** (for the end-to-end tests) are 112x112 aligned faces of eight horizontal
bands of 14 rows whose mean red values are ``128 + A (cos a P + sin a Q)`` (each band
dithered between two integers, so its mean is within 1/3136 of that), which the stub
backbone of :data:`STUB_MODULE` turns back into the planted direction. Some are placed at an
integer offset in a larger canvas of noise, their landmarks moved with them, so that only an
alignment finds the face.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The ArcFace 112x112 five-point template (x, y), as InsightFace publishes it.
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
#: Two orthonormal zero-mean directions of R^8 (Haar vectors).
P = np.array([1, 1, 1, 1, -1, -1, -1, -1]) / math.sqrt(8)
Q = np.array([1, 1, -1, -1, 0, 0, 0, 0]) / 2.0
#: The gallery template's angle of each subject; G1 holds 1 and 2, G2 3 and 4.
GALLERY_ANGLES = {1: 0, 2: 90, 3: 180, 4: 270}
#: The five probe templates' angles of each subject.
PROBE_ANGLES = {
    1: (16, 25, 41, 47, 292),
    2: (42, 67, 136, 149, 160),
    3: (123, 141, 148, 244, 246),
    4: (215, 260, 275, 282, 331),
}
#: The answers of the module's docstring.
KNOWN = {
    "tar_at_far_0.1": 0.35,
    "rank1": {"G1": 0.8, "G2": 0.7, "mean": 0.75},
    "tpir_at_fpir_0.1": {"G1": 0.3, "G2": 0.3, "mean": 0.3},
}
#: A backbone that reads the planted direction back from a face: the red channel's mean
#: over each band of 14 rows, less their mean (invariant to the per-channel normalisation,
#: and to a mirror), times a trained scale.
STUB_MODULE = """
import torch
from torch import nn


class Bands(nn.Module):
    def __init__(self, embedding_dim):
        super().__init__()
        assert embedding_dim == 8
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, inputs):
        red = inputs[:, 0]  # (B, 112, 112)
        bands = red.reshape(red.shape[0], 8, -1).mean(dim=2)  # (B, 8)
        return self.scale * (bands - bands.mean(dim=1, keepdim=True))


def build(embedding_dim, input_shape):
    assert tuple(input_shape) == (3, 112, 112), input_shape
    return Bands(embedding_dim)
"""


def direction(angle: float, amplitude: float = 1.0) -> np.ndarray:
    """``amplitude (cos a P + sin a Q)``, (8,)."""
    radians = math.radians(angle)
    return amplitude * (math.cos(radians) * P + math.sin(radians) * Q)


@dataclass
class Image:
    """One crop of the set: its name, template, media, planted angle and amplitude,
    detector score, and the offset of its face in the canvas (x, y)."""

    name: str
    template: int
    media: int
    angle: float
    amplitude: float
    score: float
    offset: tuple[int, int] = (0, 0)

    def embedding(self) -> np.ndarray:
        """The planted embedding, (8,)."""
        return direction(self.angle, self.amplitude)

    def landmarks(self) -> np.ndarray:
        """The five landmarks in the canvas, (5, 2)."""
        return TEMPLATE + np.array(self.offset, dtype=np.float64)


@dataclass
class IJBSet:
    """What :func:`ijb_set` designs: the images, the 1:1 pairs, the 1:N files' rows."""

    images: list[Image] = field(default_factory=list)
    pairs: list[tuple[int, int, int]] = field(default_factory=list)
    galleries: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    probes: list[tuple[int, int]] = field(default_factory=list)

    def embeddings(self) -> np.ndarray:
        """The planted embeddings, (N, 8)."""
        return np.stack([image.embedding() for image in self.images])

    def subject_of(self) -> dict[int, int]:
        """Each template's subject."""
        rows = [*self.probes, *(row for rows in self.galleries.values() for row in rows)]
        return dict(rows)


def _subject_id(subject: int) -> int:
    return 7000 + subject


def ijb_set(galleries: tuple[str, str] = ("G1", "G2")) -> IJBSet:
    """The design of the module's docstring."""
    design = IJBSet(galleries={name: [] for name in galleries})
    number = iter(range(1, 1000))
    for subject, angle in GALLERY_ANGLES.items():
        template, media = 100 + subject, 500 + subject
        for delta, amplitude, offset in ((10, 100.0, (0, 0)), (-10, 60.0, (23, 9))):
            name = f"{next(number)}.png"
            design.images.append(
                Image(name, template, media, angle + delta, amplitude, 0.8, offset)
            )
        design.galleries[galleries[(subject - 1) // 2]].append((template, _subject_id(subject)))
    template = 200
    for subject, angles in PROBE_ANGLES.items():
        for angle in angles:
            template += 1
            design.probes.append((template, _subject_id(subject)))
            photo = Image(f"{next(number)}.png", template, 600 + template, angle + 15, 90.0, 0.9)
            design.images.append(photo)
            for amplitude in (50.0, 70.0, 110.0):  # the video shares its subject's media id
                offset = (5, 31) if amplitude == 70.0 else (0, 0)
                design.images.append(
                    Image(
                        f"{next(number)}.png",
                        template,
                        500 + subject,
                        angle - 15,
                        amplitude,
                        0.1,
                        offset,
                    )
                )
    for probe, probe_subject in design.probes:
        for subject in GALLERY_ANGLES:
            design.pairs.append((100 + subject, probe, int(_subject_id(subject) == probe_subject)))
    return design


# ----------------------------------------------------------------------------- the files
def meta_folder(root: Path, set_name: str) -> Path:
    return root / set_name / "meta"


def write_meta(root: Path, design: IJBSet, set_name: str = "IJBC") -> Path:
    """The meta files of ``design`` under ``root/<set_name>/meta``; returns the set's folder."""
    meta = meta_folder(root, set_name)
    meta.mkdir(parents=True, exist_ok=True)
    prefix = set_name.lower()
    (meta / f"{prefix}_face_tid_mid.txt").write_text(
        "".join(f"{i.name} {i.template} {i.media}\n" for i in design.images)
    )
    lines = []
    for image in design.images:
        points = " ".join(f"{value:.4f}" for value in image.landmarks().reshape(-1))
        lines.append(f"{image.name} {points} {image.score:.4f}\n")
    (meta / f"{prefix}_name_5pts_score.txt").write_text("".join(lines))
    (meta / f"{prefix}_template_pair_label.txt").write_text(
        "".join(f"{a} {b} {label}\n" for a, b, label in design.pairs)
    )
    images_of: dict[int, list[Image]] = {}
    for image in design.images:
        images_of.setdefault(image.template, []).append(image)
    for name, rows in design.galleries.items():
        write_enrolment(meta / f"{prefix}_1N_gallery_{name}.csv", rows, images_of)
    write_enrolment(meta / f"{prefix}_1N_probe_mixed.csv", design.probes, images_of)
    return root / set_name


def write_enrolment(
    path: Path, rows: list[tuple[int, int]], images_of: dict[int, list[Image]]
) -> None:
    """A 1:N CSV as the release writes it: a header, one row per image of a template."""
    lines = ["TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT\n"]
    for template, subject in rows:
        for sighting, image in enumerate(images_of[template]):
            lines.append(f"{template},{subject},img/{image.name},{sighting},0,0,112,112\n")
    path.write_text("".join(lines))


def band_values(image: Image) -> np.ndarray:
    """The red channel of the aligned face, (112, 112) uint8: eight dithered bands."""
    rng = np.random.default_rng(zlib.crc32(image.name.encode()))
    targets = 128.0 + image.embedding()  # (8,)
    face = np.empty((112, 112), dtype=np.uint8)
    for band, target in enumerate(targets):
        low = math.floor(target)
        high_count = round((target - low) * 14 * 112)
        values = np.full(14 * 112, low, dtype=np.int64)
        values[rng.permutation(14 * 112)[:high_count]] = low + 1
        face[14 * band : 14 * (band + 1)] = values.reshape(14, 112)
    return face


def write_images(root: Path, design: IJBSet, set_name: str = "IJBC") -> dict[str, np.ndarray]:
    """The crops under ``root/<set_name>/loose_crop`` (PNG: lossless); returns each one's
    aligned face's red channel, (112, 112) uint8."""
    from PIL import Image as PILImage

    folder = root / set_name / "loose_crop"
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(1)
    faces = {}
    for image in design.images:
        red = band_values(image)
        face = np.stack([red, np.full_like(red, 90), np.full_like(red, 200)], axis=2)
        x, y = image.offset
        canvas = noise.integers(0, 256, (112 + y + 17, 112 + x + 11, 3), dtype=np.uint8)
        canvas[y : y + 112, x : x + 112] = face
        PILImage.fromarray(canvas).save(folder / image.name)
        faces[image.name] = red
    return faces


def write_ijb(root: Path, set_name: str = "IJBC", images: bool = True) -> IJBSet:
    """:func:`ijb_set` written under ``root/<set_name>`` (meta files, and the crops)."""
    galleries = ("G1", "G2") if set_name == "IJBC" else ("S1", "S2")
    design = ijb_set(galleries)
    write_meta(root, design, set_name)
    if images:
        write_images(root, design, set_name)
    return design

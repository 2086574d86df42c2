"""``marginkit ijb``: a run or an exported file on IJB-B or IJB-C, into ``ijb.json``.

>>> from marginkit.ijb import evaluate_ijb, summarize_ijb
>>> entry, out = evaluate_ijb("runs/faces", "~/ijb/IJB_release", "IJBC")  # doctest: +SKIP
>>> print(summarize_ijb(entry))  # doctest: +SKIP

The report file holds one entry per set (``{"format_version": 1, "sets": {"IJBB": ...,
"IJBC": ...}}``): evaluating the other set of the same model adds its entry, evaluating a
set again replaces that set's. By default it is ``RUN/ijb.json`` for a run and
``FILE.ijb.json`` beside an exported file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marginkit._validation import check_count
from marginkit.export.embed import load_embedder, source_reads
from marginkit.export.sidecar import ExportError
from marginkit.ijb.embedding import AlignedFaces, embed_faces
from marginkit.ijb.measure import ijb_report
from marginkit.ijb.protocol import load_protocol
from marginkit.runfolder import (
    RunFolder,
    RunFolderError,
    atomic_write_text,
    check_output_file,
    json_safe,
)

__all__ = ["IJB_FORMAT_VERSION", "default_output", "evaluate_ijb", "summarize_ijb"]

#: The layout of the report file.
IJB_FORMAT_VERSION = 1


def default_output(source: str | Path) -> Path:
    """Where the report goes without ``out``: ``RUN/ijb.json``, or ``FILE.ijb.json``."""
    path = Path(source)
    return RunFolder(path).ijb if path.is_dir() else path.with_name(path.name + ".ijb.json")


def _kept_sets(out: Path, source: str, force: bool) -> dict[str, Any]:
    """The entries of an existing report at ``out`` to keep beside the new one: those of
    the same source; nothing when ``out`` does not exist or ``force`` replaces it.

    Raises:
        RunFolderError: ``out`` exists but is not a report of ``source`` (without ``force``).
    """
    if force or not (out.exists() or out.is_symlink()):
        return {}
    try:
        values = json.loads(out.read_text(encoding="utf-8"))
        sets = values["sets"]
        sources = {entry["source"] for entry in sets.values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise RunFolderError(
            f"out: {out} exists and is not an IJB report; pass --force to replace it"
        ) from None
    if sources - {source}:
        raise RunFolderError(
            f"out: {out} holds the IJB report of {sorted(sources - {source})[0]}, not of "
            f"{source}; choose another path, or pass --force to replace it"
        )
    return dict(sets)


def _checkpoint(source: Path, checkpoint: str | None) -> str | None:
    """The checkpoint folder a run is measured at (None for an exported file).

    Raises:
        ExportError: not a run folder, or it has no (such) checkpoint.
    """
    from marginkit.evaluation import run_checkpoint

    if not source.is_dir():
        return None
    try:
        return str(run_checkpoint(source, checkpoint))
    except FileNotFoundError as error:
        raise ExportError(str(error)) from None


def _input_size(source: Path, input_shape: tuple[int, ...]) -> tuple[int, int]:
    from marginkit.data.errors import DataError

    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise DataError(
            f"{source}: IJB needs a model of images, input shape (3, H, W) or (1, H, W); "
            f"this one's is {tuple(input_shape)}"
        )
    return int(input_shape[1]), int(input_shape[2])


def evaluate_ijb(
    source: str | Path,
    root: str | Path,
    set_name: str,
    *,
    out: str | Path | None = None,
    flip: bool = True,
    score_weighting: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    checkpoint: str | None = None,
    data_dir: str | Path | None = None,
    backbone: str | None = None,
    progress: bool = False,
    force: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run or an exported file on IJB-B or IJB-C and write the report.

    Every meta file is read and checked, and the output path too, before any image is read.

    Args:
        source: a run folder or a file written by ``marginkit export``.
        root: the set's folder (``IJBC/``: ``loose_crop/``, ``meta/``) or the one above it.
        set_name: ``"IJBB"`` or ``"IJBC"``.
        out: the report file; None: :func:`default_output`.
        flip: embed each face as the sum of the face's and its mirror's embeddings.
        score_weighting: weight each image by its detector score when pooling.
        batch_size: faces per batch.
        workers: processes reading and aligning the faces (0: this one).
        checkpoint: a run's checkpoint by name (None: the newest).
        data_dir: a run's data folder, for a run without ``preprocessing.json``.
        backbone: confirms a ``module:callable`` backbone the source records.
        progress: show the embedding's progress, with its ETA, on stderr.
        force: replace an ``out`` that is not a report of this source.

    Returns:
        ``(entry, out)``: the set's entry (:func:`~marginkit.ijb.measure.ijb_report`'s
        figures, with ``source``, ``kind``, ``checkpoint``, ``root``, ``flip``) and where
        the report was written.

    Raises:
        DataError: a meta file missing or malformed, a crop unreadable (named).
        ExportError, BackboneError, CheckpointError: a bad source (as ``marginkit embed``).
        RunFolderError: ``out`` is a file read here, in a run's checkpoints folder, or
            another report (without ``force``).
        OutputError: ``out`` cannot be written.
    """
    check_count("batch_size", batch_size, 1)
    check_count("workers", workers, 0)
    protocol = load_protocol(root, set_name)
    path = Path(source)
    if not path.exists():
        raise ExportError(f"{path}: no such run folder or exported file")
    folder = _checkpoint(path, checkpoint)
    target = default_output(path) if out is None else Path(out)
    check_output_file(target, force=True, reads=[*source_reads(path), *protocol.reads()])
    kept = _kept_sets(target, str(path), force)  # before any image is read
    name = None if folder is None else Path(folder).name
    embedder = load_embedder(path, checkpoint=name, data_dir=data_dir, backbone=backbone)
    size = _input_size(path, embedder.preprocessing.input_shape)
    faces = AlignedFaces(protocol.files.images, protocol.names, protocol.landmarks, size)
    embeddings = embed_faces(
        embedder,
        faces,
        flip=flip,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        description=f"embedding {protocol.name} faces",
    )
    entry = {
        "source": str(path),
        "kind": embedder.kind,
        "checkpoint": folder,
        "root": str(protocol.files.folder),
        "flip": flip,
        **ijb_report(protocol, embeddings, score_weighting=score_weighting),
    }
    _write_report(target, {**kept, protocol.name: entry})
    return entry, target


def _write_report(path: Path, sets: dict[str, Any]) -> None:
    """Write the report file (atomically, without NaN)."""
    report = {"format_version": IJB_FORMAT_VERSION, "sets": sets}
    atomic_write_text(path, json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _identification_lines(identification: dict[str, Any]) -> list[str]:
    """The 1:N lines of a summary: one per gallery, and their mean."""
    lines = []
    rows = [*identification["galleries"].items(), ("mean", identification["mean"])]
    for name, figures in rows:
        ranks = ", ".join(f"rank-{k} {_percent(v)}" for k, v in figures["rank"].items())
        tpirs = ", ".join(
            f"TPIR@FPIR={point['fpir']:g} {_percent(point['tpir'])}"
            for point in figures["tpir_at_fpir"]
        )
        counts = ""
        if name != "mean":
            counts = (
                f" ({figures['num_gallery_templates']:,} gallery templates, "
                f"{figures['num_mated_probes']:,} mated and "
                f"{figures['num_non_mated_probes']:,} non-mated probes)"
            )
        lines.append(f"  1:N {name}{counts}: {ranks}; {tpirs}")
    return lines


def summarize_ijb(entry: dict[str, Any]) -> str:
    """A few readable lines of one set's entry (rates in percent)."""
    where = entry["source"] + ("" if entry["checkpoint"] is None else f" ({entry['checkpoint']})")
    pooling = "score-weighted" if entry["score_weighting"] else "unweighted"
    lines = [
        f"{entry['set']}: {where}; {entry['num_images']:,} images, {entry['num_media']:,} "
        f"media, {entry['num_templates']:,} templates; {'flip' if entry['flip'] else 'no flip'}, "
        f"{pooling} media-then-template pooling"
    ]
    verification = entry["verification"]
    tars = ", ".join(
        f"{point['far']:g} {_percent(point['tar'])}" for point in verification["tar_at_far"]
    )
    lines.append(
        f"  1:1 {verification['num_pairs']:,} pairs ({verification['num_same']:,} same "
        f"subject): TAR@FAR {tars}; AUC {verification['auc']:.4f}"
    )
    if entry["identification"] is None:
        lines.append("  1:N not measured: the set's meta folder has no 1:N file")
    else:
        lines.extend(_identification_lines(entry["identification"]))
    return "\n".join(lines)

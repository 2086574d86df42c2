"""Export a run's backbone for deployment, and embed folders of images.

>>> from marginkit.export import export_run, embed_folder
>>> export_run("runs/faces", "onnx", "face.onnx")  # doctest: +SKIP  # + face.onnx.json
>>> embed_folder("face.onnx", "photos/", "embeddings.npz")  # doctest: +SKIP

- :mod:`~marginkit.export.run`: :func:`export_run` writes the backbone alone (not the head)
  as ONNX, TorchScript or safetensors, reads it back and checks it against PyTorch.
- :mod:`~marginkit.export.sidecar`: the JSON record beside every exported file
  (``FILE.json``): input shape, normalisation, embedding size, loss, versions, SHA-256.
- :mod:`~marginkit.export.formats`: each format's writer and reader, and the check.
- :mod:`~marginkit.export.source`: a run folder's backbone and preprocessing, without its
  training data.
- :mod:`~marginkit.export.embed`: :func:`embed_folder`, with a run or an exported file.

ONNX needs the ``export`` extra (onnx, onnxscript, onnxruntime); the other formats only the
``train`` extra. See docs/export.md.
"""

from marginkit.export.embed import Embedder, embed_folder, embed_images, find_images, load_embedder
from marginkit.export.formats import ONNX_OPSET
from marginkit.export.run import TOLERANCE, export_run
from marginkit.export.sidecar import FORMATS, ExportError, read_sidecar, sidecar_path
from marginkit.export.source import RunBackbone, load_run_backbone

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "TOLERANCE",
    "Embedder",
    "ExportError",
    "RunBackbone",
    "embed_folder",
    "embed_images",
    "export_run",
    "find_images",
    "load_embedder",
    "load_run_backbone",
    "read_sidecar",
    "sidecar_path",
]

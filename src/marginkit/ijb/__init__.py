"""IJB-B and IJB-C: the template-based 1:1 verification and 1:N identification protocols.

>>> from marginkit.ijb import evaluate_ijb, summarize_ijb
>>> entry, out = evaluate_ijb("runs/faces", "IJB_release", "IJBC", workers=4)  # doctest: +SKIP
>>> print(summarize_ijb(entry))  # doctest: +SKIP

- :mod:`~marginkit.ijb.protocol`: the release's meta files as the public evaluation reads
  them (the face list, landmarks and detector scores, template pairs, 1:N galleries and
  probes), each checked: :func:`load_protocol`.
- :mod:`~marginkit.ijb.embedding`: each crop aligned with its five landmarks and embedded
  (flip: the face and its mirror), in batches read by worker processes.
- :mod:`~marginkit.ijb.pooling`: :func:`pool_templates`, image embeddings -> media ->
  templates.
- :mod:`~marginkit.ijb.measure`: the 1:1 ROC and TAR at FAR, the 1:N rank-k and TPIR at FPIR
  per gallery and their mean (:func:`ijb_report`).
- :mod:`~marginkit.ijb.run`: :func:`evaluate_ijb` (``marginkit ijb``: writes ``ijb.json``)
  and :func:`summarize_ijb`.

See docs/ijb.md.
"""

from marginkit.ijb.measure import (
    IDENTIFICATION_FPIRS,
    RANKS,
    VERIFICATION_FARS,
    identification_figures,
    ijb_report,
    verification_figures,
)
from marginkit.ijb.pooling import pool_templates
from marginkit.ijb.protocol import SETS, Enrolment, MetaFiles, Protocol, load_protocol
from marginkit.ijb.run import default_output, evaluate_ijb, summarize_ijb

__all__ = [
    "IDENTIFICATION_FPIRS",
    "RANKS",
    "SETS",
    "VERIFICATION_FARS",
    "Enrolment",
    "MetaFiles",
    "Protocol",
    "default_output",
    "evaluate_ijb",
    "identification_figures",
    "ijb_report",
    "load_protocol",
    "pool_templates",
    "summarize_ijb",
    "verification_figures",
]

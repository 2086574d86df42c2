"""marginkit.ijb's pooling and figures: the designed set's known answers, and equality with
an independent naive implementation (plain loops) on random sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ijb_naive
import numpy as np
import pytest
from ijb_files import KNOWN, PROBE_ANGLES, IJBSet, Image, direction, write_ijb, write_meta

from marginkit.data import DataError
from marginkit.ijb import ijb_report, load_protocol, pool_templates
from marginkit.ijb.measure import IDENTIFICATION_FPIRS, RANKS, VERIFICATION_FARS


def _angle(vector: np.ndarray) -> float:
    """The angle (degrees, in [0, 360)) of a vector of the design's circle."""
    from ijb_files import P, Q

    return math.degrees(math.atan2(float(vector @ Q), float(vector @ P))) % 360


def test_the_designed_set_gives_its_known_answers(tmp_path: Path) -> None:
    design = write_ijb(tmp_path, images=False)
    report = ijb_report(load_protocol(tmp_path, "IJBC"), design.embeddings())
    assert (report["num_images"], report["num_media"], report["num_templates"]) == (88, 44, 24)
    verification = report["verification"]
    assert (verification["num_same"], verification["num_different"]) == (20, 60)
    by_far = {point["far"]: point for point in verification["tar_at_far"]}
    assert list(by_far) == list(VERIFICATION_FARS)
    assert by_far[0.1]["tar"] == pytest.approx(KNOWN["tar_at_far_0.1"], abs=1e-12)
    assert by_far[0.1]["achieved_far"] == pytest.approx(0.1)
    assert by_far[0.1]["threshold"] == pytest.approx(math.cos(math.radians(148 - 180)))
    for far in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2):  # 60 negatives cannot measure them
        assert by_far[far]["tar"] is None and not by_far[far]["available"]
        assert "only 60 different-subject pairs" in by_far[far]["reason"]
    identification = report["identification"]
    for name in ("G1", "G2"):
        gallery = identification["galleries"][name]
        assert (gallery["num_mated_probes"], gallery["num_non_mated_probes"]) == (10, 10)
        assert gallery["rank"] == {"1": KNOWN["rank1"][name], "5": 1.0, "10": 1.0}
        low, high = gallery["tpir_at_fpir"]
        assert high["tpir"] == pytest.approx(KNOWN["tpir_at_fpir_0.1"][name], abs=1e-12)
        assert low["fpir"] == 0.01 and low["tpir"] is None and not low["available"]
        assert low["reason"].startswith("only 10 non-mated probes; an FPIR of 0.01 needs")
    mean = identification["mean"]
    assert mean["rank"]["1"] == pytest.approx(KNOWN["rank1"]["mean"])
    assert mean["tpir_at_fpir"] == [
        {"fpir": 0.01, "tpir": None},
        {"fpir": 0.1, "tpir": pytest.approx(KNOWN["tpir_at_fpir_0.1"]["mean"])},
    ]
    json.dumps(report, allow_nan=False)


def test_pooling_is_per_media_then_per_template(tmp_path: Path) -> None:
    design = write_ijb(tmp_path, images=False)
    protocol = load_protocol(tmp_path / "IJBC", "IJBC")
    angles = [a for subject in PROBE_ANGLES.values() for a in subject]
    ids, features = pool_templates(design.embeddings(), protocol.templates, protocol.medias)
    assert ids.tolist() == [101, 102, 103, 104, *range(201, 221)]
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-15)
    planted = [0, 90, 180, 270, *angles]
    assert [_angle(f) for f in features] == pytest.approx(planted, abs=1e-9)
    # by detector score: the photo (0.9) outweighs the video (0.1) of each probe
    _, weighted = pool_templates(
        design.embeddings(), protocol.templates, protocol.medias, protocol.scores
    )
    shift = math.degrees(math.atan(0.8 * math.tan(math.radians(15))))
    expected = [0, 90, 180, 270, *((a + shift) % 360 for a in angles)]
    assert [_angle(f) for f in weighted] == pytest.approx(expected, abs=1e-9)


def _random_set(rng: np.random.Generator) -> tuple[IJBSet, np.ndarray]:
    """30 subjects (G1: 15, G2: 15), one gallery template each, seven probe templates each;
    1 to 4 images per template in 1 or 2 media (media ids shared across templates); 1,500
    random pairs. Returns the design and each image's embedding (subject + noise), (N, 6)."""
    design = IJBSet(galleries={"G1": [], "G2": []})
    centres = rng.normal(size=(30, 6))
    embeddings = []
    template = 0
    for subject in range(30):
        for kind in ["gallery"] + ["probe"] * 7:
            template += 1
            if kind == "gallery":
                design.galleries["G1" if subject < 15 else "G2"].append((template, subject))
            else:
                design.probes.append((template, subject))
            for _ in range(int(rng.integers(1, 5))):
                media = int(rng.integers(0, 2)) + 10 * (template % 3)
                score = float(rng.uniform(0.05, 1.0))
                name = f"{len(design.images)}.jpg"
                design.images.append(Image(name, template, media, 0.0, 1.0, score))
                embeddings.append(centres[subject] + 1.1 * rng.normal(size=6))
    subject_of = design.subject_of()
    for _ in range(1500):
        first, second = (int(t) for t in rng.integers(1, template + 1, size=2))
        design.pairs.append((first, second, int(subject_of[first] == subject_of[second])))
    return design, np.array(embeddings)


@pytest.mark.parametrize("weighting", [False, True])
def test_every_figure_equals_the_naive_implementation(
    tmp_path: Path, weighting: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("marginkit.ijb.pooling._CHUNK", 37)  # images pooled in chunks
    monkeypatch.setattr("marginkit.ijb.measure._PAIR_CHUNK", 101)  # pairs scored in chunks
    design, embeddings = _random_set(np.random.default_rng(3))
    write_meta(tmp_path, design)
    protocol = load_protocol(tmp_path, "IJBC")
    report = ijb_report(protocol, embeddings, score_weighting=weighting)
    scores = protocol.scores if weighting else None
    pooled = ijb_naive.templates(embeddings, protocol.templates, protocol.medias, scores)
    ids, features = pool_templates(embeddings, protocol.templates, protocol.medias, scores)
    assert ids.tolist() == sorted(pooled)
    np.testing.assert_allclose(features, np.stack([pooled[t] for t in ids]), atol=1e-12)

    pair_scores = [float(pooled[a] @ pooled[b]) for a, b, _ in design.pairs]
    same = [bool(label) for _, _, label in design.pairs]
    verification = report["verification"]
    assert verification["num_same"] == sum(same) > 10
    for point in verification["tar_at_far"]:
        expected = ijb_naive.tar_at_far(pair_scores, same, point["far"])
        assert point["tar"] == (None if expected is None else pytest.approx(expected, abs=1e-12))
    assert [p["tar"] is None for p in verification["tar_at_far"]] == [True] * 3 + [False] * 3

    identification = report["identification"]
    for name, gallery in design.galleries.items():
        ranks, tpirs = ijb_naive.identification(
            pooled, gallery, design.probes, RANKS, IDENTIFICATION_FPIRS
        )
        figures = identification["galleries"][name]
        assert figures["rank"] == pytest.approx({str(k): v for k, v in ranks.items()}, abs=1e-12)
        assert 0 < ranks[1] < ranks[5] < ranks[10] < 1  # the ranks tell something apart
        assert [p["tpir"] for p in figures["tpir_at_fpir"]] == pytest.approx(tpirs, abs=1e-12)
        assert all(tpir is not None for tpir in tpirs)


def test_a_zero_pooled_template_is_named() -> None:
    embeddings = np.array([[1.0, 0.0], [2.0, 1.0], [-3.0, 0.0]])
    templates, medias = np.array([5, 7, 7]), np.array([1, 1, 2])
    with pytest.raises(DataError, match="template 7: its pooled embedding is zero"):
        pool_templates(embeddings, templates, medias, np.array([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="non-zero rows"):
        pool_templates(np.zeros((3, 2)), templates, medias)


def test_a_probe_set_without_a_subject_of_a_gallery_is_refused(tmp_path: Path) -> None:
    design = write_ijb(tmp_path, images=False)
    design.probes = [row for row in design.probes if row[1] in (7001, 7002)]  # G1's only
    write_meta(tmp_path, design)
    with pytest.raises(DataError, match=r"ijbc_1N_gallery_G2.csv: no probe of .* has a subject"):
        ijb_report(load_protocol(tmp_path, "IJBC"), design.embeddings())


def test_direction_is_on_the_circle() -> None:
    assert float(direction(30) @ direction(90)) == pytest.approx(math.cos(math.radians(60)))

"""marginkit.evaluation.run: every section that applies to a run, checked against direct
computation, on the split that was asked for."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from marginkit.data import VerificationPairs, load_dataset
from marginkit.evaluation import analyse, evaluate_run, load_run, summarize
from marginkit.evaluation import run as evaluation_run
from marginkit.losses import CosFace
from marginkit.models import BackboneError
from marginkit.runfolder import RunFolderError
from marginkit.train import TrainConfig, fit


@pytest.fixture(scope="module")
def open_set_noisy_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A 2-D ArcFace run on digits 0-6 with 20 % label noise (3 epochs)."""
    out = tmp_path_factory.mktemp("analysis") / "run"
    config = TrainConfig(
        dataset="digits",
        backbone="mlp",
        embedding_dim=2,
        loss="arcface",
        loss_args={"scale": 16.0},
        classes=[0, 1, 2, 3, 4, 5, 6],
        label_noise=0.2,
        epochs=3,
        batch_size=64,
        lr=0.05,
        out=str(out),
        threads=1,
    )
    return out, fit(config, progress=False)


def test_every_section_and_picture_of_an_open_set_noisy_run(open_set_noisy_run) -> None:  # type: ignore[no-untyped-def]
    out, result = open_set_noisy_run
    bundle = result.bundle
    report = analyse(
        result.backbone,
        result.head,
        bundle,
        loss_name="arcface",
        label_noise=0.2,
        plots_dir=out / "plots",
        metrics_file=out / "metrics.json",
    )
    json.dumps(report)  # JSON-serialisable
    inputs, labels = bundle.test.tensors()
    with torch.no_grad():
        embeddings = result.backbone(inputs)
    known = labels < bundle.num_classes
    direct = (result.head.logits(embeddings[known]).argmax(1) == labels[known]).float().mean()
    assert report["closed_set"]["top1_accuracy"] == pytest.approx(float(direct))
    assert report["closed_set"]["samples"] == int(known.sum())
    assert report["open_set"]["num_unknown_samples"] == int((~known).sum()) > 0
    assert 0.0 <= report["open_set"]["auroc"] <= 1.0
    flipped = int((bundle.train_labels != bundle.train_clean_labels).sum())
    assert report["label_noise"]["num_flipped"] == flipped > 0
    assert report["verification"]["num_positive"] == report["verification"]["num_negative"]
    assert report["verification"]["pairs_source"].startswith("seeded sample")
    assert report["geometry"]["overall"]["separation_min"] >= 0.0
    names = {Path(path).name for path in report["plots"]}
    for stem in (
        "features_2d",
        "similarity",
        "target_logit",
        "gradient",
        "roc",
        "learning_curves",
        "label_noise_angles",
        "label_noise_gradients",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
        assert (out / "plots" / f"{stem}.png").stat().st_size > 0
    assert "features_3d.png" not in names  # D = 2 draws the 2-D picture only


def test_pairs_of_the_data_set_are_used_for_verification() -> None:
    bundle = load_dataset("digits", progress=False)
    generator = torch.Generator().manual_seed(0)
    first = torch.arange(0, 40)
    second = torch.arange(40, 80)
    _, labels = bundle.test.tensors()
    bundle.pairs = VerificationPairs(
        images=bundle.test,
        first=first,
        second=second,
        same=labels[first] == labels[second],
        fold=torch.randint(0, 10, (40,), generator=generator),
    )
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8))
    head = CosFace(10, 8)
    report = analyse(backbone, head, bundle, loss_name="cosface")
    assert report["verification"]["pairs_source"] == "the data set's pairs file"
    assert report["verification"]["num_pairs"] == 40
    assert "plots" not in report and "label_noise" not in report


def test_eval_of_a_data_set_without_test_split_measures_validation(
    open_set_noisy_run, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    out, _ = open_set_noisy_run
    config, backbone, head, bundle = load_run(out)
    without_test = dataclasses.replace(bundle, test=None, validation=bundle.test)
    monkeypatch.setattr(
        evaluation_run, "load_run", lambda *_, **__: (config, backbone, head, without_test)
    )
    report = evaluate_run(out, plots=False)
    assert report["split"] == "validation"
    assert report["analysis"]["split"] == "validation"
    assert report["known_samples"] == report["analysis"]["closed_set"]["samples"]


def test_the_analysis_measures_the_split_eval_asks_for(open_set_noisy_run) -> None:  # type: ignore[no-untyped-def]
    """``eval --split train``: the analysis measures the training split too (it used to
    measure the test split whatever was asked)."""
    out, result = open_set_noisy_run
    report = evaluate_run(out, split="train", plots=False)
    analysis = report["analysis"]
    assert report["split"] == analysis["split"] == "train"
    train_samples = len(result.bundle.train_labels)
    assert analysis["closed_set"]["samples"] == report["known_samples"] == train_samples
    assert analysis["closed_set"]["top1_accuracy"] == pytest.approx(report["accuracy"])
    assert analysis["verification"]["pairs_source"] == "seeded sample of the train split"
    assert "open_set" not in analysis  # the training split holds only known classes


def test_eval_json_holds_the_accuracy_as_a_fraction(open_set_noisy_run) -> None:  # type: ignore[no-untyped-def]
    out, _ = open_set_noisy_run
    report = evaluate_run(out, analysis=False)
    written = json.loads((out / "eval.json").read_text())
    assert 0.0 <= written["accuracy"] == report["accuracy"] <= 1.0
    assert f"accuracy {100 * report['accuracy']:.2f} %" in summarize(report)


def test_each_split_is_embedded_once(open_set_noisy_run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from marginkit.evaluation import embedding

    out, _ = open_set_noisy_run
    embedded: list[str] = []
    original = embedding.embed

    def counting_embed(*args, name: str = "", **kwargs):  # type: ignore[no-untyped-def]
        embedded.append(name)
        return original(*args, name=name, **kwargs)

    monkeypatch.setattr(embedding, "embed", counting_embed)
    evaluate_run(out, plots=False)
    assert sorted(embedded) == ["test", "train"]


def test_save_embeddings_replaces_a_file_only_with_force(
    open_set_noisy_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out, _ = open_set_noisy_run
    existing = tmp_path / "embeddings.npz"
    existing.write_bytes(b"someone's embeddings")
    exists = f"^save_embeddings: {re.escape(str(existing))} exists; pass --force to replace it$"
    with pytest.raises(RunFolderError, match=exists):
        evaluate_run(out, save_embeddings=existing, analysis=False)
    assert existing.read_bytes() == b"someone's embeddings"
    inside = out / "checkpoints" / "epoch-0003" / "embeddings.npz"
    with pytest.raises(RunFolderError, match="is inside the checkpoints folder of run "):
        evaluate_run(out, save_embeddings=inside, analysis=False, force=True)
    assert not inside.exists()
    report = evaluate_run(out, save_embeddings=existing, analysis=False, force=True)
    assert report["embeddings_file"] == str(existing)
    with np.load(existing) as written:
        assert written["embeddings"].shape == (report["samples"], 2)


def test_a_recorded_import_spec_is_imported_only_when_confirmed(
    open_set_noisy_run, tmp_path: Path, foreign_backbone: tuple[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    """``eval`` of someone else's run whose config.yaml names a module:callable backbone."""
    (out, _), (module, imported) = open_set_noisy_run, foreign_backbone
    spec = f"{module}:mlp"
    theirs = tmp_path / "theirs"
    shutil.copytree(out, theirs)
    (theirs / "eval.json").unlink(missing_ok=True)  # from the tests before
    config = yaml.safe_load((theirs / "config.yaml").read_text())
    (theirs / "config.yaml").write_text(yaml.safe_dump({**config, "backbone": spec}))
    with pytest.raises(BackboneError, match=rf"confirm with --backbone {spec}$"):
        evaluate_run(theirs, analysis=False)
    assert not imported.exists() and not (theirs / "eval.json").exists()
    report = evaluate_run(theirs, analysis=False, backbone=spec)
    assert imported.exists()
    assert report["accuracy"] == evaluate_run(out, analysis=False)["accuracy"]

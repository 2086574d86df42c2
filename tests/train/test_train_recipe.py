"""Training recipes (marginkit.train.recipe)."""

from __future__ import annotations

import json
import math

import pytest

from marginkit.losses import available, build
from marginkit.registry import Registry
from marginkit.train import ConfigError, TrainConfig, fit, load_config, loss_kwargs
from marginkit.train.recipe import RECIPES, apply_recipe, scale_bound

#: One MNIST image: the input every recipe below is resolved for.
SHAPE = (1, 28, 28)


# ---------------------------------------------------------------------------- recipes
def test_scale_bound_is_the_normface_bound() -> None:
    assert scale_bound(10) == pytest.approx(0.9 * math.log(9 * 0.999 / 0.001))
    assert scale_bound(2, 0.5) == pytest.approx(0.0)
    assert scale_bound(10_000) > 16 > scale_bound(1_000)


@pytest.mark.parametrize("loss", available())
def test_marginkit_recipe_fills_what_is_left_open(loss: str) -> None:
    config = apply_recipe(TrainConfig(loss=loss), 10, SHAPE)
    assert (config.optimizer, config.lr_schedule) == ("adamw", "cosine")
    assert config.lr in (1e-3, 3e-4)
    assert config.weight_decay == 5e-4
    head = build(loss, num_classes=10, embedding_dim=4, **loss_kwargs(config.loss_args))
    schedules = [schedule for schedule in head.schedules.values() if schedule.relative]
    # every loss with a margin or an annealed value follows the run (AdaCos, NormFace,
    # Virtual Softmax and softmax have none)
    expected_relative = loss not in {"softmax", "normface", "virtual", "adacos"}
    assert bool(schedules) == expected_relative
    head.set_total_steps(10)
    for _ in range(10):  # every run-relative value is at its end point by the run's end
        head.advance()
    values = head.hyperparameters()
    papers = {"cosface": 0.35, "arcface": 0.5, "curricularface": 0.5, "subcenter": 0.5}
    papers |= {"adaface": 0.4}
    if loss in papers:
        assert values["margin"] == pytest.approx(papers[loss])
    if loss == "magface":
        assert values["lower_margin"] == pytest.approx(0.45)
        assert values["upper_margin"] == pytest.approx(0.8)
    if loss in ("lsoftmax", "sphereface"):
        assert values["lambda_"] == 5.0  # L-Softmax too: SphereFace's floor


def test_paper_recipe_keeps_the_papers_settings() -> None:
    config = apply_recipe(TrainConfig(loss="sphereface", recipe="paper"), 10, SHAPE)
    assert (config.optimizer, config.lr, config.lr_schedule) == ("sgd", 0.1, "step")
    assert config.loss_args == {"lambda_": "sphereface"}
    head = build("sphereface", 10, 4, **loss_kwargs(config.loss_args))
    assert not head.schedules["lambda_"].relative
    arcface = apply_recipe(TrainConfig(loss="arcface", recipe="paper"), 10, SHAPE)
    assert arcface.loss_args == {}  # the head's constant paper margin
    camsoftmax = apply_recipe(TrainConfig(loss="camsoftmax", recipe="paper"), 10, SHAPE)
    assert camsoftmax.loss_args == {"c": "ramp"}


def test_the_users_values_win() -> None:
    config = TrainConfig(
        loss="amsoftmax", optimizer="sgd", lr=0.05, loss_args={"margin": 0.2}, weight_decay=0
    )
    resolved = apply_recipe(config, 10, SHAPE)
    assert (resolved.optimizer, resolved.lr, resolved.weight_decay) == ("sgd", 0.05, 0.0)
    assert resolved.lr_schedule == "cosine"
    assert resolved.loss_args == {"margin": 0.2}
    assert config.optimizer == "sgd" and config.lr_schedule is None  # not changed in place


def test_scale_rises_to_the_bound_for_many_classes() -> None:
    few = apply_recipe(TrainConfig(loss="normface"), 10, SHAPE)
    many = apply_recipe(TrainConfig(loss="normface"), 100_000, SHAPE)
    assert few.loss_args["scale"] == 16.0
    assert many.loss_args["scale"] == math.ceil(scale_bound(100_000)) > 16
    cam = apply_recipe(TrainConfig(loss="camsoftmax"), 10, SHAPE)
    assert cam.loss_args["scale"] == 20.0


def test_unknown_recipe_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"recipe must be 'marginkit' or 'paper'; got 'fast'"):
        TrainConfig(recipe="fast")
    assert RECIPES == ("marginkit", "paper")


def test_run_folder_records_the_resolved_recipe(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    config = TrainConfig(
        dataset="digits",
        backbone="mlp",
        embedding_dim=8,
        loss="arcface",
        epochs=1,
        max_steps=5,
        out=str(out),
        log_every=0,
    )
    result = fit(config, progress=False)
    saved = load_config(out / "config.yaml")
    assert saved.optimizer == "adamw" and saved.lr_schedule == "cosine"
    assert saved.loss_args == {"margin": "warmup:0.5:20%"}
    assert result.config == saved
    assert result.head.total_steps == 5
    assert result.final["hyperparameters"]["margin"] == pytest.approx(0.5)


def test_max_steps_and_train_fraction_bound_the_run() -> None:
    config = TrainConfig(
        dataset="digits",
        backbone="mlp",
        embedding_dim=8,
        loss="sphereface",
        epochs=5,
        batch_size=32,
        train_fraction=0.5,
        max_steps=30,
        log_every=0,
    )
    result = fit(config, progress=False)
    count = round(0.5 * result.bundle.train.tensors()[1].numel())  # the class-balanced half
    per_epoch = math.ceil(count / 32)
    assert per_epoch < 30
    assert [row["step"] for row in result.history] == [per_epoch, 30]
    assert int(result.head.step) == 30 and result.head.total_steps == 30
    assert result.final["hyperparameters"]["lambda_"] == 5.0


LENET = {"backbone": "lenetpp"}  # no normalisation layer: embeddings start at norm ~0.2


def test_normalised_heads_get_the_smaller_learning_rate_on_a_backbone_without_norm_layers() -> None:
    for loss in ("normface", "cosface", "arcface", "combined", "camsoftmax"):
        assert apply_recipe(TrainConfig(loss=loss, **LENET), 10, SHAPE).lr == 3e-4
    for loss in ("softmax", "lsoftmax", "sphereface", "virtual"):
        assert apply_recipe(TrainConfig(loss=loss, **LENET), 10, SHAPE).lr == 1e-3


@pytest.mark.parametrize(
    ("backbone", "shape", "lr"),
    [
        ("lenetpp", (1, 28, 28), 3e-4),
        ("facenet", (3, 112, 96), 3e-4),
        ("mlp", (1, 16, 16), 1e-3),
        ("mnistnet", (1, 28, 28), 1e-3),
        ("resnet20", (3, 32, 32), 1e-3),
        ("iresnet18", (3, 112, 112), 1e-3),
        ("mobilefacenet", (3, 112, 112), 1e-3),
    ],
)
def test_a_backbone_with_a_normalisation_layer_keeps_the_normalised_heads_at_1e_3(
    backbone: str, shape: tuple[int, ...], lr: float
) -> None:
    """Cause 2 of docs/recipes.md: the angular step is about lr / ||x||, and a backbone with
    batch normalisation starts 15-30 times larger than LeNet++, so 3e-4 would only slow it."""
    config = TrainConfig(loss="arcface", backbone=backbone, embedding_dim=64)
    assert apply_recipe(config, 10, shape).lr == lr
    softmax = TrainConfig(loss="softmax", backbone=backbone, embedding_dim=64)
    assert apply_recipe(softmax, 10, shape).lr == 1e-3


def test_the_backbone_is_inspected_without_drawing_a_random_number() -> None:
    import torch

    state = torch.get_rng_state()
    apply_recipe(TrainConfig(loss="arcface", backbone="iresnet18"), 10, (3, 112, 112))
    assert torch.equal(torch.get_rng_state(), state)


_SPEC_NETS = """
import torch
from torch import nn


def plain(embedding_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, embedding_dim))


def normalised(embedding_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, embedding_dim), nn.LayerNorm(embedding_dim))


def needs_real_tensors(embedding_dim):
    net = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(784), nn.Linear(784, embedding_dim))
    net[2].weight.data.numpy()  # a meta tensor has no data: this fails on the meta device
    torch.rand(3)  # and this draws from the random state, which the recipe puts back
    return net
"""


def test_a_backbone_of_ones_own_is_inspected_too(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    (tmp_path / "recipe_spec_nets.py").write_text(_SPEC_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = {"plain": 3e-4, "normalised": 1e-3, "needs_real_tensors": 1e-3}
    for name, lr in expected.items():
        config = TrainConfig(loss="cosface", backbone=f"recipe_spec_nets:{name}")
        state = torch.get_rng_state()
        assert apply_recipe(config, 10, SHAPE).lr == lr
        assert torch.equal(torch.get_rng_state(), state)


def test_a_users_learning_rate_wins_over_the_backbone_rule() -> None:
    config = TrainConfig(loss="arcface", backbone="mlp", lr=3e-4)
    assert apply_recipe(config, 10, SHAPE).lr == 3e-4


@pytest.mark.parametrize("loss", available())
def test_every_head_that_normalises_the_embedding_gets_the_smaller_learning_rate(
    loss: str,
) -> None:
    """On LeNet++, 3e-4 for exactly the heads whose loss sees only ``x / ||x||`` (as the
    recipe builds them), 1e-3 for the others."""
    config = apply_recipe(TrainConfig(loss=loss, **LENET), 10, SHAPE)
    head = build(loss, 10, 4, **loss_kwargs(config.loss_args))
    assert config.lr == (3e-4 if head.margin_geometry.normalized_embeddings else 1e-3)


def test_a_new_normalised_head_gets_the_smaller_learning_rate(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The recipe reads the geometry from the head's class, so a loss registered later (here
    NormFace and SphereFace under new names) is in no hand-written list to be left out of."""
    from marginkit.train import recipe

    new = {"newnorm": "marginkit.losses.normface:NormFace"}
    new["newsphere"] = "marginkit.losses.lsoftmax:SphereFace"  # normalised weights only
    monkeypatch.setattr(recipe, "LOSSES", Registry("loss", new))
    assert apply_recipe(TrainConfig(loss="newnorm", **LENET), 10, SHAPE).lr == 3e-4
    assert apply_recipe(TrainConfig(loss="newsphere", **LENET), 10, SHAPE).lr == 1e-3


def test_a_users_optimiser_gets_its_usual_learning_rate() -> None:
    sgd = apply_recipe(TrainConfig(loss="arcface", optimizer="sgd"), 10, SHAPE)
    assert (sgd.optimizer, sgd.lr) == ("sgd", 0.1)
    adamw = apply_recipe(TrainConfig(loss="arcface", optimizer="adamw", **LENET), 10, SHAPE)
    assert adamw.lr == 3e-4  # the recipe's own optimiser: its lr
    paper = apply_recipe(TrainConfig(loss="cosface", recipe="paper", optimizer="adamw"), 10, SHAPE)
    assert paper.lr == 1e-3


@pytest.mark.parametrize("loss", ["normface", "cosface", "arcface", "combined", "camsoftmax"])
def test_recipe_keeps_a_learned_scale_learned(loss: str) -> None:
    """The recipe's scale (NormFace's bound for NormFace and Cam-softmax, none for the
    margins) is only the starting value of a learned scale; the head still learns it."""
    config = TrainConfig.from_sources(flags={"loss": loss}, loss_args=["learn_scale=true"])
    assert config.loss_args["learn_scale"] is True  # --loss-arg parses true as a bool
    resolved = apply_recipe(config, 100_000, SHAPE)
    head = build(loss, 100_000, 4, **loss_kwargs(resolved.loss_args))
    assert head.log_scale is not None
    start = resolved.loss_args.get("scale", build(loss, 10, 4).hyperparameters()["scale"])
    assert head.hyperparameters()["scale"] == pytest.approx(start, rel=1e-6)


def test_cli_trains_a_learned_scale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from marginkit import cli

    out = tmp_path / "run"
    arguments = ["train", "--dataset", "digits", "--backbone", "mlp", "--embedding-dim", "8"]
    arguments += ["--loss", "cosface", "--loss-arg", "learn_scale=true", "--max-steps", "3"]
    arguments += ["--epochs", "1", "--log-every", "0", "--quiet", "--out", str(out)]
    assert cli.main(arguments) == 0
    assert load_config(out / "config.yaml").loss_args["learn_scale"] is True
    final = json.loads((out / "metrics.json").read_text())["final"]["hyperparameters"]
    assert final["scale"] != pytest.approx(30.0, abs=1e-6)  # three AdamW steps moved it
    assert final["scale"] == pytest.approx(30.0, rel=0.01)

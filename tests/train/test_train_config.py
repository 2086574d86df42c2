"""TrainConfig validation, YAML I/O, the loss-argument language and the lr schedules."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from marginkit.losses import build
from marginkit.schedules import Warmup
from marginkit.train import (
    ConfigError,
    TrainConfig,
    learning_rate_at,
    load_config,
    loss_kwargs,
    parse_classes,
    parse_loss_arg,
    parse_value,
    save_config,
)
from marginkit.train.config import (
    GROUPS,
    group_options,
    inert_options,
    option_choices,
    option_help,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5", 0.5),
        ("4", 4),
        ("-2", -2),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("pi", math.pi),
        ("pi/4", math.pi / 4),
        ("3*pi/8", 3 * math.pi / 8),
        ("warmup:0.5:1000", ("warmup", [0.5, 1000.0])),  # read by marginkit.schedules
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text, "x")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("warmup:0.5", "takes 2..3 arguments"),  # read by marginkit.schedules
        ("fast one", "nor a single word"),
        ("nan", "'nan' is not a finite number"),
        ("Inf", "'Inf' is not a finite number"),
        ("pi/0", "'pi/0' divides by zero"),
        ("3*pi/0.0", "'3\\*pi/0.0' divides by zero"),
        ("1e400", "'1e400' is not a finite number"),
        ("0.5x", "neither a number"),
    ],
)
def test_parse_value_errors_name_the_argument(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"loss argument margin: .*{message}|{message}"):
        parse_value(text, "margin")


def test_a_single_word_is_a_named_choice_the_head_checks() -> None:
    assert parse_value("continuous", "fallback") == "continuous"
    assert parse_loss_arg("fallback=continuous") == ("fallback", "continuous")
    assert parse_value("pi", "margin") == pytest.approx(math.pi)  # still an angle
    head = build("arcface", 10, 8, **loss_kwargs({"fallback": "continuous"}))
    assert head.fallback == "continuous"
    with pytest.raises(ValueError, match=r"^fallback must be one of insightface, continuous"):
        build("arcface", 10, 8, **loss_kwargs({"fallback": "smooth"}))
    with pytest.raises(TypeError, match="margin"):  # a word where a number belongs
        build("arcface", 10, 8, **loss_kwargs({"margin": "large"}))


def test_parse_loss_arg() -> None:
    assert parse_loss_arg("margin=0.5") == ("margin", 0.5)
    assert parse_loss_arg("c = ramp") == ("c", "ramp")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_loss_arg("margin")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_loss_arg("2x=1")


def test_loss_kwargs_build_the_schedules() -> None:
    """Schedule text becomes the schedule (the text form: tests/test_schedules.py)."""
    kwargs = loss_kwargs({"margin": "warmup:0.5:1000", "scale": 30.0, "bias": True})
    assert isinstance(kwargs["margin"], Warmup)
    assert kwargs["margin"].value_at(500) == pytest.approx(0.25)
    assert kwargs["scale"] == 30.0 and kwargs["bias"] is True
    with pytest.raises(ConfigError, match=r"loss argument margin: .*steps"):
        loss_kwargs({"margin": "warmup:0.5:10.5"})


def test_parse_classes() -> None:
    assert parse_classes("0-6") == list(range(7))
    assert parse_classes("0,2,5-7") == [0, 2, 5, 6, 7]
    assert parse_classes([3, 1]) == [3, 1]
    for bad in ("6-0", "a-b", "1,1", ""):
        with pytest.raises(ConfigError, match="classes"):
            parse_classes(bad)


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(
        dataset="mnist",
        loss="arcface",
        loss_args={"margin": "warmup:0.5:100", "scale": 30.0},
        milestones=[3, 1],
        classes="0-6",
        epochs=4,
    )
    save_config(config, tmp_path / "config.yaml")
    loaded = load_config(tmp_path / "config.yaml")
    assert loaded == config
    assert loaded.milestones == [1, 3]


def test_yaml_unknown_key_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: digits\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "unknown key 'learning_rate'" in message
    assert "\n" not in message


def test_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("dataset: [digits\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"\xff\xfe", "byte 0xff at offset 0"),
        (b"epochs: 2\nout: caf\xe9\n", "byte 0xe9 at offset 18"),
    ],
    ids=["utf16-bom", "latin1"],
)
def test_a_config_file_that_is_not_utf8_is_one_line(
    tmp_path: Path, data: bytes, where: str
) -> None:
    """A UnicodeDecodeError traceback (or, read as UTF-16, an empty config)."""
    path = tmp_path / "b.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"config file {path} is not UTF-8 text ({where})"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("label_noise", 1.0, r"label_noise must be a rate in \[0, 1\)"),
        ("label_noise", -0.1, "label_noise"),
        ("epochs", 0, "epochs must be an integer >= 1"),
        ("optimizer", "adam", "optimizer must be 'sgd' or 'adamw'"),
        ("lr", 0.0, "lr must be a finite number > 0"),
        ("lr_schedule", "linear", "lr_schedule"),
        ("milestones", [0], "milestones"),
        ("loss_args", {"margin": [1]}, "loss_args.margin"),
        ("batch_size", True, "batch_size"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_learning_rate_schedules_against_direct_formulas() -> None:
    steps_per_epoch = 10
    step_config = TrainConfig(epochs=8, lr=0.2, lr_schedule="step", lr_gamma=0.5)
    assert step_config.lr_milestones() == [4, 6]
    for step in range(80):
        epoch = step // steps_per_epoch
        expected = 0.2 * (1.0 if epoch < 4 else 0.5 if epoch < 6 else 0.25)
        assert learning_rate_at(step_config, step, steps_per_epoch) == pytest.approx(expected)
    cosine = TrainConfig(epochs=4, lr=0.1, lr_schedule="cosine", warmup_epochs=1)
    assert learning_rate_at(cosine, 0, steps_per_epoch) == pytest.approx(0.01)
    assert learning_rate_at(cosine, 9, steps_per_epoch) == pytest.approx(0.1)
    assert learning_rate_at(cosine, 10, steps_per_epoch) == pytest.approx(0.1)
    assert learning_rate_at(cosine, 25, steps_per_epoch) == pytest.approx(0.05)
    assert learning_rate_at(cosine, 39, steps_per_epoch) == pytest.approx(
        0.05 * (1 + math.cos(math.pi * 29 / 30))
    )
    assert TrainConfig(optimizer="adamw").learning_rate() == 1e-3
    assert TrainConfig(optimizer="sgd").learning_rate() == 0.1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", math.nan),
        ("lr", math.inf),
        ("momentum", math.nan),
        ("weight_decay", math.inf),
        ("lr_gamma", math.nan),
        ("label_noise", math.nan),
        ("validation_fraction", math.nan),
        ("train_fraction", math.nan),
        ("loss_args", {"margin": math.nan}),
    ],
    ids=lambda value: str(value),
)
def test_non_finite_numbers_are_refused(field: str, value: object) -> None:
    """``--lr nan`` used to be accepted and failed at step 1, leaving a folder."""
    with pytest.raises(ConfigError, match=rf"{field}(\.margin)? must be .*(finite|number)"):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_every_option_is_documented_once() -> None:
    """The command line's help comes from these descriptions."""
    descriptions = option_help()
    assert list(descriptions) == [field.name for field in dataclasses.fields(TrainConfig)]
    assert all(descriptions.values())
    assert option_choices()["optimizer"] == (("sgd", "adamw"), True)
    assert option_choices()["recipe"] == (("marginkit", "paper"), False)


def test_every_option_has_its_help_in_its_field_metadata() -> None:
    """The command line's help is each field's ``metadata["help"]`` (once parsed out of the
    class's docstring, where rewording prose could break ``--help``)."""
    for option in dataclasses.fields(TrainConfig):
        text = option.metadata.get("help")
        assert isinstance(text, str) and text.endswith("."), option.name
        assert "``" not in text and ":class:" not in text, option.name  # plain text
        assert option_help()[option.name] == text


def test_every_option_is_in_one_named_group() -> None:
    groups = {option.name: option.metadata["group"] for option in dataclasses.fields(TrainConfig)}
    assert set(groups.values()) == set(GROUPS)  # each group named once, none empty
    assert [name for group in GROUPS for name in group_options(group)] == sorted(
        groups, key=lambda name: GROUPS.index(groups[name])
    )
    assert group_options("data")[:2] == ("dataset", "data_dir")
    assert set(inert_options()) == {
        "data_dir",
        "cache_dir",
        "download",
        "threads",
        "device",
        "workers",
        "log_every",
    }
    with pytest.raises(ValueError, match="unknown option group 'optimization'"):
        group_options("optimization")


def test_a_group_is_a_view_of_the_flat_options() -> None:
    config = TrainConfig(lr=0.05, epochs=3, backbone="lenetpp", embedding_dim=2)
    assert (config.lr, config.epochs) == (0.05, 3)  # flat keywords and attributes
    assert config.group("model") == {"backbone": "lenetpp", "embedding_dim": 2}
    assert config.group("optimisation")["lr"] == 0.05
    config.embedding_dim = 3
    assert config.group("model")["embedding_dim"] == 3  # read when asked, never a copy


def test_a_flat_config_yaml_of_an_earlier_run_still_loads(tmp_path: Path) -> None:
    """config.yaml stays flat, one key per option, as every earlier run wrote it."""
    written = tmp_path / "config.yaml"
    written.write_text(
        "dataset: mnist\ndata_dir: null\ncache_dir: null\ndownload: true\nclasses: 0-6\n"
        "label_noise: 0.0\nvalidation_fraction: 0.1\naugment: null\nimage_size: null\n"
        "min_images_per_person: 10\npairs_file: pairsDevTest.txt\nbackbone: lenetpp\n"
        "embedding_dim: 2\nloss: arcface\nloss_args:\n  margin: warmup:0.5:20%\n  scale: 30.0\n"
        "recipe: marginkit\nepochs: 3\nmax_steps: null\ntrain_fraction: 1.0\n"
        "batch_size: 128\neval_batch_size: 512\noptimizer: adamw\nlr: 0.0003\n"
        "momentum: 0.9\nweight_decay: 0.0005\nlr_schedule: cosine\nmilestones: null\n"
        "lr_gamma: 0.1\nwarmup_epochs: 0\nclip_grad_norm: null\nseed: 0\nthreads: 1\n"
        "device: cpu\nprecision: fp32\nworkers: 0\nnproc: 1\ntimeout: 300.0\n"
        "log_every: 50\nverify: null\nverify_every: 0\nverify_best: null\nout: runs/a\n"
    )
    config = load_config(written)
    assert config.group("data")["classes"] == "0-6" and config.lr == 0.0003
    assert config.group("loss") == {
        "loss": "arcface",
        "loss_args": {"margin": "warmup:0.5:20%", "scale": 30.0},
    }
    saved = tmp_path / "again.yaml"
    save_config(config, saved)
    newer = {"init_from: null", "freeze_backbone_epochs: 0", "accumulate: 1"}  # added since
    again = [line for line in saved.read_text().splitlines() if line not in newer]
    assert again == written.read_text().splitlines()  # written back flat, key for key


def test_from_sources_merges_file_then_flags_then_loss_arguments(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text(
        "epochs: 4\nbatch_size: 32\nloss: cosface\nloss_args: {margin: 0.2, scale: 8}\n"
    )
    config = TrainConfig.from_sources(
        file=file, flags={"epochs": 2}, loss_args=["margin=warmup:0.3:10"]
    )
    assert (config.epochs, config.batch_size, config.loss) == (2, 32, "cosface")
    assert config.loss_args == {"margin": "warmup:0.3:10", "scale": 8}


def test_from_sources_starts_from_a_saved_config_without_a_file(tmp_path: Path) -> None:
    saved = tmp_path / "run" / "config.yaml"
    saved.parent.mkdir()
    save_config(TrainConfig(epochs=7, out=str(saved.parent)), saved)
    assert TrainConfig.from_sources(saved=saved, flags={"seed": 3}).epochs == 7
    assert TrainConfig.from_sources(saved=tmp_path / "none.yaml").epochs == TrainConfig().epochs
    file = tmp_path / "other.yaml"
    file.write_text("epochs: 5\n")
    assert TrainConfig.from_sources(file=file, saved=saved).epochs == 5  # the file wins
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        TrainConfig.from_sources(flags={"epoch": 1})

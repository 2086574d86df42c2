"""The shipped presets: each loads, its claims name its runs, options override it."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginkit.compare import available_presets, load_preset
from marginkit.compare.presets import preset_text, spec_from_options
from marginkit.compare.spec import expand_runs, with_noise
from marginkit.train import ConfigError

PRESETS = (
    "digits",
    "toy2d",
    "margin-sweep",
    "mnist",
    "compactness",
    "open-set",
    "label-noise",
    "faces",
    "scale",
)


def test_every_preset_is_listed_with_a_title() -> None:
    listed = available_presets()
    assert set(listed) == set(PRESETS)
    assert all(title for title in listed.values())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_its_claims_name_its_runs(name: str) -> None:
    spec = load_preset(name)
    assert spec.preset == name and spec.description
    names = {variant.name for variant in spec.variants}
    for claim in spec.claims:
        assert claim["source"] and claim["claim"]
        if claim["check"] != "not_testable":
            assert set(claim["runs"]) | {claim.get("baseline", claim["runs"][0])} <= names
    if name != "digits":
        assert spec.settings.dataset in ("mnist", "lfw") and spec.claims
        assert spec.settings.data_dir is None  # data locations come from the user


def test_label_noise_preset_trains_every_loss_at_40_percent_noise() -> None:
    spec = load_preset("label-noise")
    assert {variant.label_noise for variant in spec.variants} == {0.4}
    variants = {variant.name: variant for variant in spec.variants}
    # the fair baseline is NormFace at Cam-softmax's own scale; ArcFace and CosFace are controls
    assert variants["normface-s20"].loss_args == {"scale": 20.0}
    baselines = {claim["baseline"] for claim in spec.claims}
    assert {"normface-s20", "arcface", "cosface"} <= baselines


def test_several_noise_rates_cross_every_loss_and_name_each_run_by_its_rate() -> None:
    variants = with_noise(expand_runs(["softmax", "camsoftmax"], "runs"), [0.2, 0.4])
    noise = {variant.name: variant.label_noise for variant in variants}
    assert noise == {
        "softmax-noise20": 0.2,
        "camsoftmax-noise20": 0.2,
        "softmax-noise40": 0.4,
        "camsoftmax-noise40": 0.4,
    }


def test_the_presets_fix_their_rule_and_seeds_before_any_run() -> None:
    """Three seeds each; where loss families with different learning rates meet, the rate
    is chosen on a validation split; no preset keeps a tolerance chosen after its result."""
    for name in PRESETS:
        spec = load_preset(name)
        assert spec.seeds >= 3, name
        assert all("tolerance" not in claim for claim in spec.claims), name
        if spec.lr_grid:
            assert spec.settings.validation_fraction > 0, name
            continue
        # without a learning-rate choice, every claim compares runs of one loss only
        loss = {variant.name: variant.loss for variant in spec.variants}
        for claim in spec.claims:
            if claim["check"] != "not_testable":
                compared = [*claim["runs"], *([claim["baseline"]] if "baseline" in claim else [])]
                assert len({loss[run] for run in compared}) == 1, (name, claim["claim"])


def test_margin_sweep_variants_carry_their_loss_arguments() -> None:
    variants = {variant.name: variant for variant in load_preset("margin-sweep").variants}
    assert variants["lsoftmax-m3"].loss_args == {"margin": 3}
    assert variants["arcface-m0.3"].loss_args == {"margin": "warmup:0.3:20%"}


def test_options_override_the_preset() -> None:
    spec = spec_from_options("toy2d", {"epochs": 1, "losses": "softmax,arcface", "seeds": 3})
    assert spec.settings.epochs == 1 and spec.seeds == 3
    assert [variant.name for variant in spec.variants] == ["softmax", "arcface"]
    assert spec.settings.backbone == "lenetpp" and spec.settings.embedding_dim == 2
    given = spec_from_options("mnist", {"data_dir": "/elsewhere"})
    assert given.settings.data_dir == "/elsewhere"


@pytest.mark.parametrize("preset", [None, "toy2d"])
def test_seed_is_the_first_seed_of_the_grid(preset: str | None) -> None:
    """``compare --seed 7`` was always refused: "settings.seed is set per run"."""
    from marginkit.compare import CompareSpec

    spec = spec_from_options(preset, {"losses": "softmax", "epochs": 1, "seed": 7, "seeds": 2})
    assert spec.seed_values == [7, 8]
    variant = spec.variants[0]
    assert [spec.run_config(variant, seed).seed for seed in spec.seed_values] == [7, 8]
    assert spec.run_name(variant, 7) == "softmax-seed7"
    saved = CompareSpec.from_dict(spec.to_dict())  # grid.yaml keeps it
    assert saved.seed_values == [7, 8] and saved.grid_identity() == spec.grid_identity()
    assert (
        spec.grid_identity()
        != spec_from_options(preset, {"losses": "softmax", "epochs": 1, "seeds": 2}).grid_identity()
    )


def test_without_a_preset_digits_or_the_generic_settings() -> None:
    assert spec_from_options(None, {}).preset == "digits"
    generic = spec_from_options(None, {"dataset": "mnist", "backbone": "lenetpp"})
    assert generic.preset is None and generic.settings.epochs == 2
    assert len(generic.variants) == len(load_preset("digits").variants)


def test_a_copied_preset_file_runs_as_given(tmp_path: Path) -> None:
    copy = tmp_path / "mine.yaml"
    copy.write_text(preset_text("scale").replace("epochs: 1", "epochs: 4"))
    spec = load_preset(str(copy))
    assert spec.settings.epochs == 4 and spec.preset == "mine"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("runs: [softmax]\ncolour: red\n", "unknown key 'colour'"),
        ("runs: [softmax, softmax]\n", "distinct names"),
        ("runs: [{name: a, loss: nope}]\n", "unknown loss 'nope'"),
        ("runs: [{name: 'a b', loss: arcface}]\n", "name must be"),
        ("runs: [softmax]\nsettings: {loss: arcface}\n", "settings.loss is set per run"),
        ("runs: [softmax]\nsettings: {epochz: 1}\n", "unknown key 'epochz'"),
        ("runs: [{name: a, loss: arcface, loss_args: {margin: 'warmup:x'}}]\n", "margin"),
        ("runs: [softmax]\nlabel_noise: [0.2, 1.0]\n", "label_noise must be rates"),
        ("runs: [softmax]\nclaims: [{claim: c}]\n", "claims[0]"),
        ("runs: [softmax\n", "not valid YAML"),
    ],
)
def test_bad_preset_files_are_one_line_errors(text: str, fragment: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_preset(str(path))
    message = str(error.value)
    assert fragment in message and "\n" not in message


def test_a_preset_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """A UnicodeDecodeError traceback."""
    path = tmp_path / "b.yaml"
    path.write_bytes(b"title: caf\xe9\nruns: [softmax]\n")
    with pytest.raises(ConfigError) as error:
        load_preset(str(path))
    assert str(error.value) == f"--preset file {path} is not UTF-8 text (byte 0xe9 at offset 10)"


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--preset: unknown preset 'nope'.*toy2d"):
        load_preset("nope")

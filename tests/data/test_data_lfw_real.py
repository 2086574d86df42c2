"""The real LFW copy (deep-funneled images and protocol files) in ``$MARGINKIT_DATA/lfw``."""

from __future__ import annotations

import torch
from data_writers import SHARED_DATA, needs_real

from marginkit.data import load_dataset
from marginkit.data.pairs import read_pairs, read_people

LFW_DIR = SHARED_DATA / "lfw"
pytestmark = needs_real("lfw")


def test_protocol_files() -> None:
    people = read_people(LFW_DIR / "peopleDevTrain.txt")
    assert len(people) == 4038
    assert sum(1 for _, count in people if count >= 10) == 111
    everyone = read_people(LFW_DIR / "people.txt")  # View 2: 10 folds of people
    assert len({name for name, _ in everyone}) == len(everyone) == 5749
    assert sum(count for _, count in everyone) == 13233
    view_two = read_pairs(LFW_DIR / "pairs.txt")
    assert len(view_two.first) == 6000 and int(view_two.same.sum()) == 3000
    assert torch.bincount(view_two.fold).tolist() == [600] * 10
    dev_train = read_pairs(LFW_DIR / "pairsDevTrain.txt")
    assert len(dev_train.first) == 2200 and int(dev_train.same.sum()) == 1100


def test_lfw_devtrain_and_devtest_pairs() -> None:
    bundle = load_dataset("lfw", data_dir=LFW_DIR)
    people = read_people(LFW_DIR / "peopleDevTrain.txt")
    wanted = [(name, count) for name, count in people if count >= 10]
    assert bundle.num_classes == 111 and bundle.class_names == [n for n, _ in wanted]
    assert len(bundle.train) == sum(count for _, count in wanted)
    assert torch.bincount(bundle.train_labels).tolist() == [count for _, count in wanted]
    assert bundle.input_shape == (3, 112, 96) and bundle.train.data.dtype == torch.uint8
    pairs = bundle.pairs
    assert len(pairs) == 1000 and int(pairs.same.sum()) == 500 and int((~pairs.same).sum()) == 500
    assert bool((pairs.fold == 0).all())
    assert len(pairs.images) == len(pairs.image_names) == len(set(pairs.image_names))
    # DevTest people are never training identities
    pair_people = {name.split("/")[0] for name in pairs.image_names}
    assert not pair_people & set(bundle.class_names)
    image, label = pairs.images[0]
    assert label == -1 and image.shape == (3, 112, 96)

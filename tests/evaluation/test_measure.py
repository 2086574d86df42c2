"""The open-set protocols of an evaluation, each measuring what its name says."""

from __future__ import annotations

import torch

from marginkit.evaluation.measure import MeasuredSplit, unseen_identification
from marginkit.evaluation.measure import _open_set as open_set_sections


def _split(unseen: torch.Tensor) -> tuple[MeasuredSplit, torch.Tensor]:
    """Seen classes 0-2 well separated (60 samples each); unseen 3-5 as given."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.eye(16)[:3]  # (3, 16) class weights of the seen classes
    seen_labels = torch.arange(3).repeat_interleave(60)
    seen = weight[seen_labels] + 0.05 * torch.randn(180, 16, generator=generator)
    labels = torch.cat([seen_labels, torch.arange(3, 6).repeat_interleave(60)])
    return MeasuredSplit("test", torch.cat([seen, unseen]), labels, 3), weight


def _separated() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    centres = torch.eye(16)[8:11]  # far from the seen classes and from each other
    labels = torch.arange(3).repeat_interleave(60)
    return centres[labels] + 0.05 * torch.randn(180, 16, generator=generator)


def test_unseen_rank1_falls_to_chance_when_the_unseen_classes_collapse() -> None:
    collapsed = torch.ones(180, 16)  # every unseen sample at one point
    result = unseen_identification(collapsed, torch.arange(3, 6).repeat_interleave(60))
    assert result["chance"] == 1 / 3
    assert abs(result["rank1"] - 1 / 3) < 0.02
    separated = unseen_identification(_separated(), torch.arange(3, 6).repeat_interleave(60))
    assert separated["rank1"] > 0.99 and len(separated["rank1_per_draw"]) == 10
    assert separated["num_gallery"] == 3 and separated["num_probes"] == 177


def test_the_open_set_section_keeps_the_protocols_apart() -> None:
    """Collapsing the unseen classes ruins unseen-identity rank-1 but not the watch list,
    whose mated probes are seen classes: the old 'unseen rank-1' was that one."""
    good = open_set_sections(*_split(_separated()))
    bad = open_set_sections(*_split(torch.ones(180, 16)))
    assert good["unseen_identification"]["rank1"] > 0.99
    assert abs(bad["unseen_identification"]["rank1"] - 1 / 3) < 0.02
    assert good["watch_list"]["rank1"] == bad["watch_list"]["rank1"] == 1.0
    assert good["watch_list"]["num_non_mated_probes"] == 180
    assert 0.99 < good["auroc"] <= 1.0

"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from marginkit import cli


@pytest.fixture
def in_process(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """``cli.main`` in this process (no interpreter start-up): ``(status, stdout, stderr)``;
    torch's thread count, which ``train`` sets process-wide, is put back after."""
    import torch

    threads = torch.get_num_threads()

    def main(*argv: str) -> tuple[int, str, str]:
        try:
            status = cli.main(list(argv))
        except SystemExit as exited:
            status = int(exited.code or 0)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    yield main
    torch.set_num_threads(threads)

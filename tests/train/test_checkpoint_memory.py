"""A head too large to gather is saved, evaluated and resumed: two gloo ranks, each under an
address-space limit (``RLIMIT_AS``) that admits its shard's training but neither the whole
head nor its gathered copy (``memory_worker.py``), train an epoch, evaluate it (a distributed
arg-max), write a shard-local checkpoint, resume, and read the checkpoint's rows for their
own and for 3 ranks' classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import marginkit
from children import rank_records
from marginkit.distributed import free_port

WORKER = Path(__file__).with_name("memory_worker.py")
#: Float32 bytes of one rank's rows (65,536 / 2 classes x 512): 64 MiB.
SHARD = 65_536 // 2 * 512 * 4
#: What each rank may add to its address space once its first step is done: the step's
#: gradient, the working memory of the steps, the evaluation and the checkpoint (a 16 MiB
#: block at a time), well under the whole head (2 shards) or its gathered copy.
BUDGET = 2 * SHARD + SHARD // 2


def run_ranks(out: Path, budget: int | None, world: int = 2) -> list[dict]:
    """The worker as ``world`` ranks (each its own process), their records."""
    source = str(Path(marginkit.__file__).resolve().parents[1])
    port = str(free_port())
    processes = []
    for rank in range(world):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([source, str(WORKER.parent)]),
            "OMP_NUM_THREADS": "1",
            "MALLOC_ARENA_MAX": "2",
            "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
        }  # fmt: skip
        env.pop("MEMORY_BUDGET", None)
        if budget is not None:
            env["MEMORY_BUDGET"] = str(budget)
        log = (out / f"log{rank}.txt").open("w")
        command = [sys.executable, str(WORKER), str(out)]
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
    return rank_records(processes, out)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_a_head_too_large_to_gather_is_saved_evaluated_and_resumed(tmp_path: Path) -> None:
    found = run_ranks(tmp_path, BUDGET)
    for rank, record in enumerate(found):
        assert record["limited_at"] and record["resumed_limited_at"], record
        assert record["whole_head_refused"], record  # the limit admits no whole head
        assert record["epochs"] == [1, 2]
        # resumed under the limit on the same world size: epoch 1's rows and momenta
        assert record["resumed_rows"] == record["epoch_1_rows"]
        assert record["resumed_momentum_rows"] == 65_536 // 2
        # resharded: rank 0's rows lie in new ranks 0 and 1, rank 1's in 1 and 2
        assert record["resharded_rows_agree"] == [True, True], rank
    assert found[0]["test_accuracy"] == found[1]["test_accuracy"]

"""One rank of the sharded-head tests: ``python sharded_worker.py RANK WORLD PORT OUT LIMIT``.

Every rank builds the same whole heads (one per registered loss, plus the variants with a
bias, a learned scale and Cam-softmax's unnormalised form), shards them, and compares each
step's loss, ``correct`` and every gradient with the whole head run in the same process on
the gathered batch, in float64; the same with class sampling; then the schedules, the
gathered head and the state-dict round trip, the bytes sent per step, and the errors. It
writes the largest differences (and the messages) to ``OUT/rank<RANK>.json``; the test reads
them; a collective waits at most LIMIT seconds for the other ranks. Running the whole head
on every rank costs nothing in communication and lets each rank check its own rows.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from marginkit.distributed import join_state_dicts, reshard_state_dict, shard, shard_bounds
from marginkit.distributed.state import class_block
from marginkit.losses import ClassSampledHead, build
from marginkit.registry import LOSSES

NUM_CLASSES = 11
EMBEDDING_DIM = 5
STEPS = 3
#: The ranks' batch sizes (unequal on purpose).
SIZES = {2: [5, 3], 3: [4, 2, 3]}
FRACTION = 0.2
#: The state entries that are equal to rounding only: AdaCos's scale, from ``ln B_avg``, a
#: sum over every class that the shards add up in another order (float64: about 1e-15).
ROUNDED = {"adaptive_scale", "head.adaptive_scale"}
#: Every loss the sharded head supports (the others are refused: test_sharded_head.py).
SHARDABLE = [name for name in LOSSES.names() if LOSSES.get(name).unshardable is None]
CASES = [(name, {}) for name in SHARDABLE] + [
    ("softmax", {"bias": True}),
    ("normface", {"learn_scale": True}),
    ("camsoftmax", {"normalize": False}),
]


def case_name(name: str, kwargs: dict) -> str:
    return name + "".join(f"[{key}={value}]" for key, value in kwargs.items())


def global_batch(step: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's global batch, the same on every rank; the last step's labels all lie in
    rank 0's block, so the other ranks own no target (and, sampled, may hold no class)."""
    generator = torch.Generator().manual_seed(100 + step)
    size = sum(SIZES[world])
    embeddings = torch.randn(size, EMBEDDING_DIM, dtype=torch.float64, generator=generator)
    high = shard_bounds(NUM_CLASSES, world, 0)[1] if step == STEPS - 1 else NUM_CLASSES
    labels = torch.randint(0, high, (size,), generator=generator)
    return embeddings * 3.0, labels


def whole_head(name: str, kwargs: dict, sampled: bool, seed: int = 0):
    torch.manual_seed(seed)
    head = build(name, NUM_CLASSES, EMBEDDING_DIM, **kwargs).double().set_total_steps(STEPS)
    return ClassSampledHead(head, fraction=FRACTION, seed=7) if sampled else head


def difference(got: torch.Tensor | None, want: torch.Tensor | None) -> float:
    if got is None and want is None:
        return 0.0
    got = torch.zeros_like(want) if got is None else got
    want = torch.zeros_like(got) if want is None else want
    if got.shape != want.shape:
        return float("inf")
    return (
        float((got.detach().double() - want.detach().double()).abs().max()) if got.numel() else 0.0
    )


def one_step(whole, sharded, step: int, rank: int, world: int) -> dict[str, float]:
    """Loss, correct and every gradient of one training step, shard against whole."""
    embeddings, labels = global_batch(step, world)
    start = sum(SIZES[world][:rank])
    stop = start + SIZES[world][rank]
    head = whole.head if isinstance(whole, ClassSampledHead) else whole
    classes = whole.sample(labels) if isinstance(whole, ClassSampledHead) else None
    whole_x = embeddings.clone().requires_grad_(True)
    whole_loss, whole_correct = head.loss_and_correct(whole_x, labels, classes)
    local_x = embeddings[start:stop].clone().requires_grad_(True)
    loss, correct = sharded.loss_and_correct(local_x, labels[start:stop])
    whole_loss.backward()
    loss.backward()
    lo, hi = sharded.lo, sharded.hi
    errors = {
        "loss": difference(loss, whole_loss),
        "correct": float((correct != whole_correct[start:stop]).sum()),
        "embeddings": difference(local_x.grad, whole_x.grad[start:stop]),
        "weight": difference(
            sharded.head.weight.grad, class_block(head.weight.grad, NUM_CLASSES, lo, hi)
        ),
    }
    if getattr(head, "bias", None) is not None:
        errors["bias"] = difference(sharded.head.bias.grad, head.bias.grad[lo:hi])
    if getattr(head, "log_scale", None) is not None:
        errors["log_scale"] = difference(sharded.head.log_scale.grad, head.log_scale.grad)
    if classes is not None:
        parts = [None] * world
        dist.all_gather_object(parts, sharded.sampled_classes.tolist())
        union = sorted(index for part in parts for index in part)
        errors["subset"] = float(union != classes.tolist())
    for parameter in [*head.parameters(), *sharded.parameters()]:
        parameter.grad = None
    return errors


def state_differences(name: str, got: dict, want: dict) -> dict[str, float]:
    """The largest difference of the entries of two state dicts (``name``), and that of
    the statistics that are sums in another order on the shards (``name_rounded``)."""
    exact = [difference(value, want[key]) for key, value in got.items() if key not in ROUNDED]
    rounded = [difference(value, want[key]) for key, value in got.items() if key in ROUNDED]
    return {name: max(exact), f"{name}_rounded": max(rounded, default=0.0)}


def round_trip(whole, sharded, rank: int, world: int) -> dict[str, float]:
    """gather(), join_state_dicts and reshard_state_dict against the whole head."""
    head = whole.head if isinstance(whole, ClassSampledHead) else whole
    gathered = sharded.gather()
    gathered_head = gathered.head if isinstance(gathered, ClassSampledHead) else gathered
    whole_state = head.state_dict()
    errors = {
        **state_differences("gathered", gathered_head.state_dict(), whole_state),
        "gathered_keys": float(set(gathered_head.state_dict()) != set(whole_state)),
    }
    if isinstance(whole, ClassSampledHead):
        same = torch.equal(gathered.generator.get_state(), whole.generator.get_state())
        errors["generator"] = float(not same)
    states = [None] * world
    dist.all_gather_object(states, sharded.state_dict())
    joined = join_state_dicts(states[::-1])  # any order
    errors.update(state_differences("joined", joined, whole_state))
    resharded = reshard_state_dict(whole_state, rank, world)
    own = sharded.state_dict()
    errors.update(state_differences("resharded", resharded, own))
    errors["resharded_keys"] = float(set(resharded) != set(own))
    sharded.load_state_dict(resharded)
    return errors


def compare_case(name: str, kwargs: dict, sampled: bool, rank: int, world: int) -> dict:
    whole = whole_head(name, kwargs, sampled)
    sharded = shard(copy.deepcopy(whole))
    whole.train()
    sharded.train()
    errors: dict[str, float] = {}
    for step in range(STEPS):
        for key, value in one_step(whole, sharded, step, rank, world).items():
            errors[key] = max(errors.get(key, 0.0), value)
    head = whole.head if isinstance(whole, ClassSampledHead) else whole
    wanted, got = head.hyperparameters(), sharded.hyperparameters()
    errors["hyperparameters"] = max([abs(got[key] - wanted[key]) for key in wanted], default=0.0)
    errors["hyperparameter_keys"] = float(set(got) != set(wanted))
    errors["step"] = float(int(sharded.step) != int(head.step) or int(head.step) != STEPS)
    errors.update(round_trip(whole, sharded, rank, world))
    return errors


def chunked_case(name: str, kwargs: dict, sampled: bool, rank: int, world: int) -> dict:
    """The largest differences of STEPS steps, shard against whole, both in blocks of 2
    classes (``chunk_size``: the sharded step's fused pass, chunked)."""
    whole = whole_head(name, kwargs, sampled)
    (whole.head if isinstance(whole, ClassSampledHead) else whole).set_chunk_size(2)
    sharded = shard(copy.deepcopy(whole))
    errors: dict[str, float] = {}
    for step in range(STEPS):
        for key, value in one_step(whole, sharded, step, rank, world).items():
            errors[key] = max(errors.get(key, 0.0), value)
    return errors


#: The classes of the memory count: a (B, C_r) block far larger than the (B, D) batch.
MEMORY_CLASSES = 3000


def held_for_backward(head, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """Bytes of the tensors autograd holds from the forward pass to the backward pass
    (each storage once; the head's parameters, which exist anyway, left out), and the
    elements of the largest of them, for one step of ``head``."""
    parameters = {parameter.untyped_storage().data_ptr() for parameter in head.parameters()}
    held: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in parameters:
            held[pointer] = tensor
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = head(embeddings, labels)
    loss.backward()
    sizes = [tensor.untyped_storage().nbytes() for tensor in held.values()]
    largest = max((tensor.numel() for tensor in held.values()), default=0)
    return {"bytes": sum(sizes), "largest": largest}


def memory(name: str, rank: int, world: int) -> dict[str, int]:
    """What one float64 step holds for backward: the shard (classes in blocks of 64) and
    the whole fused head on the gathered batch (the same blocks), with B, C_r and D."""
    torch.manual_seed(0)
    whole = build(name, MEMORY_CLASSES, EMBEDDING_DIM).double().set_total_steps(STEPS)
    whole.set_chunk_size(64)
    sharded = shard(copy.deepcopy(whole))
    embeddings, _ = global_batch(0, world)
    labels = torch.randint(0, MEMORY_CLASSES, (embeddings.shape[0],), generator=torch.Generator())
    start = sum(SIZES[world][:rank])
    local = slice(start, start + SIZES[world][rank])
    shard_held = held_for_backward(
        sharded, embeddings[local].clone().requires_grad_(True), labels[local]
    )
    whole_held = held_for_backward(whole, embeddings.clone().requires_grad_(True), labels)
    return {
        "shard_bytes": shard_held["bytes"],
        "shard_largest": shard_held["largest"],
        "whole_bytes": whole_held["bytes"],
        "batch": embeddings.shape[0],
        "classes": sharded.hi - sharded.lo,
        "dim": EMBEDDING_DIM,
    }


def step_bytes(num_classes: int, embedding_dim: int, rank: int, world: int) -> int:
    torch.manual_seed(0)
    sharded = shard(build("arcface", num_classes, embedding_dim).double())
    embeddings = torch.randn(SIZES[world][rank], embedding_dim, dtype=torch.float64)
    embeddings.requires_grad_(True)
    sharded(embeddings, torch.randint(0, num_classes, (SIZES[world][rank],))).backward()
    return sharded.step_bytes


def message(action) -> str:
    try:
        action()
    except (TypeError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def errors_and_autocast(rank: int, world: int) -> dict:
    """The one-line errors (too many ranks, different heads, one rank's bad input) and a
    bfloat16 autocast step against the whole head's."""
    results = {}
    if world > 2:  # a head of 2 classes over 3 ranks
        results["too_many_ranks"] = message(lambda: shard(build("softmax", 2, 4)))
    torch.manual_seed(0)
    results["different_heads"] = message(
        lambda: shard(build("arcface", NUM_CLASSES, EMBEDDING_DIM, scale=30.0 + (rank == 1)))
    )
    torch.manual_seed(0)
    sharded = shard(build("arcface", NUM_CLASSES, EMBEDDING_DIM))
    labels = torch.zeros(2, dtype=torch.long) + (NUM_CLASSES if rank == 1 else 0)
    results["bad_labels"] = message(lambda: sharded(torch.randn(2, EMBEDDING_DIM), labels))
    torch.manual_seed(1)
    embeddings = torch.randn(sum(SIZES[world]), EMBEDDING_DIM)
    labels = torch.randint(0, NUM_CLASSES, (sum(SIZES[world]),))
    start = sum(SIZES[world][:rank])
    local = slice(start, start + SIZES[world][rank])
    whole = build("arcface", NUM_CLASSES, EMBEDDING_DIM)
    whole.load_state_dict(sharded.gather().state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = whole(embeddings.bfloat16(), labels)
        got = sharded(embeddings[local].bfloat16(), labels[local])
    results["autocast"] = {"dtype": str(got.dtype), "difference": difference(got, want)}
    classes = torch.cat([labels.unique(), torch.tensor([NUM_CLASSES - 1])]).unique()
    embeddings = embeddings.double()
    whole, sharded = whole.double(), sharded.double()
    results["classes"] = difference(
        sharded(embeddings[local], labels[local], classes), whole(embeddings, labels, classes)
    )
    return results


def predictions(rank: int, world: int) -> dict:
    """The distributed arg-max (``ShardedHead.predict``) against the whole head's: the
    number of this rank's samples classified otherwise, per case; and the classes it gives
    when every class row is the same (every score exactly tied on every rank: the whole
    head's ``argmax`` takes class 0), the last rank giving no samples."""
    embeddings, _ = global_batch(0, world)
    start = sum(SIZES[world][:rank])
    own = slice(start, start + SIZES[world][rank])
    found: dict = {"cases": {}}
    for name, kwargs in CASES:
        whole = whole_head(name, kwargs, False)
        whole.eval()
        want = whole.logits(embeddings).argmax(1)[own]
        got = shard(whole).predict(embeddings[own])
        found["cases"][case_name(name, kwargs)] = int((got != want).sum())
    whole = build("arcface", NUM_CLASSES, EMBEDDING_DIM).double()
    with torch.no_grad():  # every row the first axis: each score one product, exactly equal
        whole.weight.zero_()
        whole.weight[:, 0] = 1.0
    mine = embeddings[own] if rank < world - 1 else embeddings[:0]
    found["ties"] = shard(whole).predict(mine).tolist()
    return found


def main() -> None:
    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    timeout = float(sys.argv[5])  # the tests' hang limit: a busy machine is no hang
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout),
    )
    results = {
        "cases": {
            case_name(name, kwargs) + ("+sampled" if sampled else ""): compare_case(
                name, kwargs, sampled, rank, world
            )
            for name, kwargs in CASES
            for sampled in (False, True)
        },
        "chunked": {
            case_name(name, kwargs) + ("+sampled" if sampled else ""): chunked_case(
                name, kwargs, sampled, rank, world
            )
            for name, kwargs in CASES
            for sampled in (False, True)
        },
        "memory": {name: memory(name, rank, world) for name in SHARDABLE},
        "bytes": {
            "small": step_bytes(NUM_CLASSES, EMBEDDING_DIM, rank, world),
            "many_classes": step_bytes(40 * NUM_CLASSES, EMBEDDING_DIM, rank, world),
            "wider": step_bytes(NUM_CLASSES, 2 * EMBEDDING_DIM, rank, world),
        },
        "predict": predictions(rank, world),
        **errors_and_autocast(rank, world),
    }
    dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

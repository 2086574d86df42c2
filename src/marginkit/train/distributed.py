"""Training on several processes: the process group, each rank's part of the work, the
``--nproc`` launcher and the checkpoint state of every rank.

A run on ``W`` processes (ranks) trains exactly the single-process run at the same global
batch: every rank draws the same seeded permutation and takes its contiguous part of each
batch (:meth:`Distribution.rows`); the backbone is wrapped in DDP and the head is sharded
across the ranks (:func:`marginkit.distributed.shard`: each rank holds about C/W class rows,
the loss is the mean over the whole global batch). The sharded head gives each rank the
gradient of the global loss with respect to its own embeddings, so the backbone's gradients
are **summed** over the ranks (a DDP communication hook), not averaged. Batch norm is the
exception: its batch statistics are those of the rank's rows (B/W samples), not of the whole
batch, so a backbone with batch norm trains slightly differently from one process (as in
every data-parallel training without synchronised batch norm).

Where the processes come from:

- ``marginkit train ... --nproc N``: :func:`launch` starts N local processes on a free
  loopback port (``gloo`` on CPU, ``NCCL`` on CUDA), watches them, and when one fails stops
  the others and reports which rank failed and how.
- ``torchrun --nnodes M --nproc-per-node N ... -m marginkit.cli train ...``: the environment
  variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
  name the process; :func:`process_group` joins the group they describe.

Only rank 0 writes the run folder (logs, progress, metrics, reports); a checkpoint is one
atomic folder that every rank writes into: each its own head rows and optimiser state
(:meth:`Distribution.write_shards`), rank 0 the backbone, the state and, last, the manifest
(the layout: :mod:`marginkit.train.checkpoint`). No rank gathers the whole head, to save,
resume (:meth:`Distribution.load_networks` reads only the rank's rows, on any number of
processes) or evaluate (a distributed arg-max, ``ShardedHead.predict``). Collective operations time
out after ``config.timeout`` seconds: a rank that died or hangs makes the others stop with an
error naming them (:class:`DistributedError`) instead of waiting for ever.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
from torch import nn

from marginkit.errors import MarginkitError

if TYPE_CHECKING:
    from marginkit.distributed.head import ShardedHead
    from marginkit.losses.head import MarginHead
    from marginkit.train.checkpoint import Checkpoint
    from marginkit.train.config import TrainConfig

    #: The head a rank trains: the whole head, or (several ranks) its shard.
    TrainingHead: TypeAlias = MarginHead | ShardedHead

__all__ = [
    "SINGLE",
    "DistributedError",
    "Distribution",
    "LauncherStopped",
    "distributed_environment",
    "launch",
    "process_group",
    "reshard_optimizer_state",
    "uses_cuda",
]

#: The environment variables torchrun (and :func:`launch`) give each process.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Seconds the launcher gives the other ranks to exit after SIGTERM before SIGKILL.
_GRACE = 5.0


class DistributedError(MarginkitError, RuntimeError):
    """A rank failed, or a collective step timed out; one line naming the rank and why."""


def uses_cuda(config: TrainConfig) -> bool:
    """Whether a run of ``config`` trains on CUDA (then NCCL, one GPU per local rank)."""
    device = str(getattr(config, "device", "cpu"))
    if device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


def check_several_processes(config: TrainConfig) -> None:
    """Refuse, with one line, what a run on several processes cannot do yet: a loss whose
    head cannot be sharded (its reason named).

    Raises:
        marginkit.train.config.ConfigError: naming the option.
    """
    from marginkit.registry import LOSSES
    from marginkit.train.config import ConfigError

    unshardable = LOSSES.get(config.loss).unshardable
    if unshardable is not None:
        raise ConfigError(
            f"loss: {config.loss} cannot be split over several processes ({unshardable}); "
            "train it with --nproc 1"
        )


def distributed_environment() -> bool:
    """Whether this process was started as one rank of several (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


# ------------------------------------------------------------------- one rank's part
@dataclass(frozen=True)
class Distribution:
    """This process's place in the run: ``rank`` of ``world`` (0 of 1: a single process).

    Every method is the identity (no communication) for a single process.
    """

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Distribution:
        """The default process group's rank and size (0 of 1 when there is none)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(rank=dist.get_rank(), world=dist.get_world_size())

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that writes the run folder and reports progress."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def rows(self, count: int) -> slice:
        """This rank's contiguous part of ``count`` rows: the first ``count % world`` ranks
        take one row more (as ``torch.tensor_split``); a part may be empty."""
        base, extra = divmod(count, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def total(self, value: int) -> int:
        """The sum of ``value`` over the ranks."""
        if not self.several:
            return value
        import torch.distributed as dist

        summed = torch.tensor([value], dtype=torch.long, device=_device())
        dist.all_reduce(summed)
        return int(summed.item())

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` (a picklable object), on every rank."""
        if not self.several:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=_device())
        return box[0]

    def collect(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` in rank order on rank 0, None on the others."""
        if not self.several:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def same_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers of ``module`` (batch norm's running statistics) on every rank, in
        place (a collective), before a forward pass outside DDP: the statistics the
        checkpoint holds. A rank's own differ after a training step (DDP gives each rank
        rank 0's at the start of a step's forward pass, which then updates them with the
        rank's rows), and the next step's forward pass replaces them anyway, so training is
        unchanged."""
        if not self.several:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def wrap_backbone(self, backbone: nn.Module) -> nn.Module:
        """The module a training step calls: ``backbone`` itself, or a DDP wrapper that sums
        its gradients over the ranks (each rank's gradient is its rows' part of the global
        loss's, see the module docstring). Its parameters are the backbone's."""
        if not self.several:
            return backbone
        from torch.nn.parallel import DistributedDataParallel

        index = torch.cuda.current_device() if _device().type == "cuda" else None
        wrapped = DistributedDataParallel(
            backbone, device_ids=None if index is None else [index], output_device=index
        )
        wrapped.register_comm_hook(None, _sum_gradients)
        return wrapped

    def gradients_kept(self, model: nn.Module) -> contextlib.AbstractContextManager[Any]:
        """The context of a micro-batch that is not its optimiser step's last
        (``--accumulate``): DDP's ``no_sync``, so each rank adds the gradients up locally and
        they are summed over the ranks once, in the last micro-batch's backward pass;
        nothing for one process. ``model``: :meth:`wrap_backbone`'s."""
        if not self.several:
            return contextlib.nullcontext()
        from torch.nn.parallel import DistributedDataParallel

        assert isinstance(model, DistributedDataParallel)  # wrap_backbone's, with several
        return model.no_sync()

    def shard_head(self, head: MarginHead) -> TrainingHead:
        """This rank's shard of ``head`` (:func:`marginkit.distributed.shard`), or ``head``."""
        if not self.several:
            return head
        from marginkit.distributed import shard

        return shard(head)

    def load_head(self, head: nn.Module, whole_state: dict[str, torch.Tensor]) -> None:
        """Load a whole head's ``state_dict`` into ``head`` (this rank's rows of it)."""
        if not self.several:
            head.load_state_dict(whole_state, strict=True)
            return
        from marginkit.distributed import reshard_state_dict

        head.load_state_dict(reshard_state_dict(whole_state, self.rank, self.world), strict=True)

    def head_parameters(self, head: nn.Module) -> int:
        """The number of parameters of the whole head of which ``head`` is this rank's part
        (a collective on several processes: the class rows summed over the ranks, the
        parameters every rank holds counted once)."""
        rows = sum(
            parameter.numel()
            for name, parameter in head.named_parameters()
            if name.rsplit(".", 1)[-1] in _CLASS_INDEXED
        )
        return self.total(rows) + sum(p.numel() for p in head.parameters()) - rows

    def load_networks(self, checkpoint: Checkpoint, backbone: nn.Module, head: nn.Module) -> None:
        """Load a checkpoint's weights into the backbone and into this rank's head: its class
        rows, read from a shard-local checkpoint's files whose classes meet its own (no other
        row is read), or cut from a whole-head checkpoint's ``head.*``; strict key match.

        Raises:
            CheckpointError: the weights do not fit the networks (names the difference).
        """
        from marginkit.distributed.state import LAYOUT_KEY
        from marginkit.train.checkpoint import head_rows, load_fitting

        parts: dict[str, dict[str, torch.Tensor]] = {"backbone": {}, "head": {}}
        for key, value in checkpoint.weights.items():
            prefix, _, name = key.partition(".")
            if prefix in parts:
                parts[prefix][name] = value
        backbone.load_state_dict(parts["backbone"], strict=True)
        if checkpoint.layout is None:  # a whole head (one process, or format 1)
            self.load_head(head, parts["head"])
            return
        rows = head_rows(checkpoint, _class_range(head))  # the ShardedHead's keys
        if self.several:
            rows[LAYOUT_KEY] = dict(head.named_buffers())[LAYOUT_KEY]
        elif not any(key.startswith("head.") for key in head.state_dict()):
            rows = {key.removeprefix("head."): value for key, value in rows.items()}
        load_fitting(checkpoint, "head rows", head, rows)

    def write_shards(
        self, folder: Path | None, head: nn.Module, optimizer: torch.optim.Optimizer, epoch: int
    ) -> list[dict[str, Any]] | None:
        """Write this rank's part of a shard-local checkpoint (a collective: every rank
        calls it; rank 0 from inside :func:`~marginkit.train.checkpoint.save_checkpoint`).

        Rank 0 passes the checkpoint's temporary folder and shares it; every rank writes its
        head's state dict (its class rows) and its optimiser state there
        (:func:`~marginkit.train.checkpoint.write_shard`), flushed; the ranks' entries then
        come to rank 0, so that when it has them every file is on disk.

        Returns:
            Every rank's entry in rank order on rank 0, None on the others.
        """
        from marginkit.train.checkpoint import ShardPart, write_shard

        shared = self.share(None if folder is None else str(folder))
        lo, hi = _class_range(head)
        part = ShardPart(
            rank=self.rank,
            world_size=self.world,
            classes=(lo, hi),
            num_classes=_class_range(head, whole=True)[1],
            head_state=head.state_dict(),
            optimizer_state=optimizer.state_dict(),
            torch_rng=torch.get_rng_state(),
        )
        return self.collect(write_shard(Path(shared), part, epoch))

    def own_state(
        self, checkpoint: Checkpoint, optimizer: torch.optim.Optimizer, head: nn.Module
    ) -> tuple[dict[str, Any], torch.Tensor]:
        """This rank's optimiser state and global RNG state in a checkpoint.

        From a shard-local checkpoint, the class rows' optimiser state of this rank's
        classes only, read from the files that hold them
        (:func:`~marginkit.train.checkpoint.read_optimizer_rows`). From a whole-head one
        of another number of processes (format 1), the class rows' state is joined and cut
        (:func:`reshard_optimizer_state`). On another number of processes the RNG state is
        rank 0's.
        """
        state, layout = checkpoint.state, checkpoint.layout
        row_parameters = _class_row_parameters(optimizer, head)
        if layout is not None:
            from marginkit.train.checkpoint import read_optimizer_rows

            entry = self.rank if int(layout["world_size"]) == self.world else 0
            rows = read_optimizer_rows(checkpoint, _class_range(head), row_parameters, entry)
            return rows, state["ranks"][entry]["torch_rng"]
        saved_world = int(state.get("world_size", 1))
        ranks = state.get("ranks") or [
            {"optimizer": state["optimizer"], "torch_rng": state["torch_rng"]}
        ]
        if saved_world == self.world:
            return ranks[self.rank]["optimizer"], ranks[self.rank]["torch_rng"]
        states = [entry["optimizer"] for entry in ranks]
        return reshard_optimizer_state(states, row_parameters, _class_rows(head)), ranks[0][
            "torch_rng"
        ]


def _class_row_parameters(optimizer: torch.optim.Optimizer, head: nn.Module) -> set[int]:
    """The numbers (in the optimiser's state dict) of the head's parameters with rows per
    class (its class weights and biases)."""
    row_parameters = {
        id(parameter)
        for name, parameter in head.named_parameters()
        if name.rsplit(".", 1)[-1] in _CLASS_INDEXED
    }
    numbers, index = set(), 0
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if id(parameter) in row_parameters:
                numbers.add(index)
            index += 1
    return numbers


def _class_range(head: nn.Module, whole: bool = False) -> tuple[int, int]:
    """The classes ``[lo, hi)`` that ``head`` holds: a shard's block, or all of a whole
    head's; ``whole``: ``(0, C)`` of either."""
    from marginkit.distributed.state import LAYOUT_KEY

    layout = dict(head.named_buffers()).get(LAYOUT_KEY)
    if layout is not None:  # [rank, world_size, lo, hi, num_classes]
        return (0, int(layout[4])) if whole else (int(layout[2]), int(layout[3]))
    margin_head: Any = getattr(head, "head", head)  # a ClassSampledHead's MarginHead
    return 0, int(margin_head.num_classes)


#: A head's parameters with one row per class (the class weights and biases).
_CLASS_INDEXED = ("weight", "bias")


def _class_rows(head: nn.Module) -> slice:
    """The weight rows ``head`` holds: a shard's block of classes (K rows a class for
    sub-centre ArcFace, which has no bias), or all of a whole head's."""
    layout = dict(head.named_buffers()).get("shard_layout")
    if layout is not None:  # [rank, world_size, lo, hi, num_classes]
        lo, hi = int(layout[2]), int(layout[3])
        weight = dict(head.named_parameters())["head.weight"]
        per_class = weight.shape[0] // (hi - lo)
        return slice(lo * per_class, hi * per_class)
    return slice(0, None)


#: One process: rank 0 of 1.
SINGLE = Distribution()


def _sum_gradients(state: Any, bucket: Any) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: all-reduce a gradient bucket as a sum (DDP's default averages)."""
    import torch.distributed as dist

    work = dist.all_reduce(bucket.buffer(), group=state, async_op=True)
    assert work is not None
    return work.get_future().then(lambda future: future.value()[0])


# DDP checks a hook's annotations against the classes themselves, not their names
_sum_gradients.__annotations__.update(
    {"bucket": torch.distributed.GradBucket, "return": torch.futures.Future[torch.Tensor]}
)


def _device() -> torch.device:
    """The device collectives of objects use: the current CUDA device under NCCL, else CPU."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------- process group
@contextlib.contextmanager
def process_group(timeout: float, cuda: bool = False) -> Iterator[Distribution]:
    """Join the process group the environment describes (torchrun's or :func:`launch`'s),
    for the duration of the ``with`` block; a single process joins none.

    A collective step that fails (a rank died: its connection closed) or waits longer than
    ``timeout`` seconds (a rank hangs) raises :class:`DistributedError` naming this rank.
    A block that ends normally ends at a barrier, so that no rank closes its connections
    while another still uses them; the group is then destroyed and its threads end, before
    the interpreter's teardown.

    Args:
        timeout: seconds a collective waits for the other ranks.
        cuda: NCCL on the GPU ``LOCAL_RANK`` (else gloo on the CPU).
    """
    if not distributed_environment():
        yield Distribution()
        return
    import torch.distributed as dist

    missing = [name for name in _ENVIRONMENT if name not in os.environ]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start the processes with "
            "torchrun or marginkit train --nproc N"
        )
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    # DDP imports this module lazily. Imported once the group exists, its functions' default
    # argument ``group=group.WORLD`` holds the group past destroy_process_group, and gloo's
    # threads with it, into the interpreter's teardown, where a rank can abort (SIGABRT) at
    # the end of a finished run. Imported before, the default is None.
    from torch.distributed.nn import functional  # noqa: F401

    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout))
    here = Distribution.current()
    try:
        yield here
        dist.barrier()  # every rank is done with the group before any closes its connections
    except DistributedError:
        raise
    except RuntimeError as error:
        if not _collective_failure(error):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(
            f"rank {here.rank} of {here.world} stopped: a collective step failed or waited "
            f"longer than --timeout {timeout:g} s (another rank died or hangs): {first}"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _collective_failure(error: RuntimeError) -> bool:
    """Whether ``error`` comes from the communication backend (not from the model)."""
    import torch.distributed as dist

    backend_error = getattr(dist, "DistBackendError", ())
    if backend_error and isinstance(error, backend_error):
        return True
    text = str(error)
    return any(
        mark in text
        for mark in (
            "gloo",
            "Gloo",
            "NCCL",
            "Connection closed",
            "Timed out",
            "timed out",
            "pair closure",  # gloo: "Application timeout caused pair closure"
        )
    )


# ------------------------------------------------------------------------ launcher
#: The signals that stop the launcher: its ranks are stopped and its folder removed first.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class LauncherStopped(KeyboardInterrupt):
    """The launcher got SIGINT, SIGTERM or SIGHUP; its ranks were stopped and joined.

    ``status`` is the shell's status of a process killed by that signal (128 + its number).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; the ranks were stopped")
        self.status = 128 + signum


class _Recorder:
    """A signal handler that records the signals it gets."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum: int, frame: Any) -> None:
        self.received.append(signum)


@contextlib.contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """For the ``with`` block: the stop signals are recorded in the list it yields instead of
    ending the process (the block checks the list where it can stop cleanly), and the first
    one is raised as :class:`LauncherStopped` when the block ends. A nested block shares the
    enclosing one's list. Outside the main thread, where Python cannot catch signals,
    nothing changes."""
    enclosing = signal.getsignal(_STOP_SIGNALS[0])
    recorder = enclosing if isinstance(enclosing, _Recorder) else _Recorder()
    previous: dict[int, Any] = {}
    if recorder is not enclosing:
        with contextlib.suppress(ValueError):  # not the main thread
            for signum in _STOP_SIGNALS:
                handler = signal.getsignal(signum)
                signal.signal(signum, recorder)
                previous[signum] = handler
    try:
        yield recorder.received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if recorder.received:
        raise LauncherStopped(recorder.received[0])


def launch(arguments: Sequence[str], nproc: int, poll: float = 0.1) -> None:
    """Run ``marginkit train ARGUMENTS`` as ``nproc`` ranks on this machine and wait.

    Each rank gets torchrun's environment variables (loopback, a free port). When a rank
    exits with an error or is killed, or the launcher gets SIGINT, SIGTERM or SIGHUP, the
    ranks still running are stopped (SIGTERM, then SIGKILL after a few seconds) and joined,
    so that nothing is left running.

    Raises:
        DistributedError: "rank R failed (exit status S)"; the ranks' own messages went to
            the terminal before.
        LauncherStopped: the launcher got a stop signal (after its ranks were stopped).
    """
    from marginkit.distributed import free_port

    port = str(free_port())
    children: list[subprocess.Popen[bytes]] = []
    failed = None
    with _deferred_signals() as received:
        try:
            for rank in range(nproc):
                if received:
                    break
                environment = dict(os.environ)
                environment.update(
                    RANK=str(rank),
                    WORLD_SIZE=str(nproc),
                    LOCAL_RANK=str(rank),
                    LOCAL_WORLD_SIZE=str(nproc),
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=port,
                )
                command = [sys.executable, "-m", "marginkit.cli", "train", *arguments]
                children.append(subprocess.Popen(command, env=environment))
            if not received:
                failed = _watch(children, poll, received)
        finally:
            _stop(children)
    if failed is not None:
        rank, status = failed
        raise DistributedError(
            f"rank {rank} of {nproc} failed ({_describe(status)}); the other ranks were stopped"
        )


def _watch(
    children: list[subprocess.Popen[bytes]], poll: float, stop: list[int]
) -> tuple[int, int] | None:
    """Wait until every child exits, or ``stop`` holds a signal; the failing ``(rank,
    status)``, or None.

    When one look finds several ranks failed, a rank killed by a signal is named before one
    that exited with an error: a rank whose peer is killed fails in its next collective and
    exits with a status, so on a busy machine both may be found dead at the same look, and the
    killed one is the cause.
    """
    while not stop:
        statuses = [child.poll() for child in children]
        failed = [(rank, status) for rank, status in enumerate(statuses) if status]
        if failed:
            return min(failed, key=lambda failure: (failure[1] > 0, failure[0]))
        if all(status == 0 for status in statuses):
            return None
        time.sleep(poll)
    return None


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the children still running: SIGTERM, then SIGKILL after a grace period;
    every child is joined (waited for)."""
    running = [child for child in children if child.poll() is None]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
    deadline = time.monotonic() + _GRACE
    for child in running:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()


def _describe(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
        return f"killed by signal {-status}"
    return f"exit status {status}"


@contextlib.contextmanager
def launch_folder() -> Iterator[Path]:
    """A temporary folder for the launcher's resolved config, removed afterwards, also when
    the launcher is stopped by SIGINT, SIGTERM or SIGHUP (:class:`LauncherStopped`)."""
    with _deferred_signals():
        folder = Path(tempfile.mkdtemp(prefix="marginkit-launch-"))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------- checkpoint state
def reshard_optimizer_state(
    states: list[dict[str, Any]], sharded: set[int], rows: slice
) -> dict[str, Any]:
    """One rank's optimiser ``state_dict`` from those of a run on another number of ranks.

    Args:
        states: the old ranks' optimiser state dicts, in rank order; their parameters are
            numbered alike (the backbone's, the same on every rank, then the head shard's).
        sharded: the numbers of the parameters split by class rows (the class weights):
            their per-row state (momentum, Adam's moments) is joined over the old ranks in
            rank order and cut to ``rows``; any other state is the same on every rank and
            rank 0's is kept.
        rows: the new rank's class rows.

    Returns:
        The state dict to load into the new rank's optimiser.
    """
    joined: dict[Any, dict[str, Any]] = {}
    for index, values in states[0]["state"].items():
        joined[index] = {}
        for name, value in values.items():
            if index in sharded and isinstance(value, torch.Tensor) and value.dim() >= 1:
                whole = torch.cat([state["state"][index][name] for state in states])
                value = whole[rows].clone()
            joined[index][name] = value
    return {"state": joined, "param_groups": states[0]["param_groups"]}

"""Training across processes: the classifier sharded by class rows over the ranks.

``marginkit.distributed.shard(head)`` turns a whole margin head (any registered loss, with
or without class sampling) into the rank's :class:`~marginkit.distributed.head.ShardedHead`
(Partial FC's model parallelism, on ``torch.distributed``: gloo on CPU, NCCL on GPU); the
state-dict functions join shards into a whole head's state and cut it for another world size.
See ``docs/distributed.md``. Nothing here initialises ``torch.distributed``: the caller (or
``torchrun``) does.
"""

from marginkit.distributed.collectives import free_port
from marginkit.distributed.head import ShardedHead, shard
from marginkit.distributed.state import join_state_dicts, reshard_state_dict, shard_bounds

__all__ = [
    "ShardedHead",
    "free_port",
    "join_state_dicts",
    "reshard_state_dict",
    "shard",
    "shard_bounds",
]

"""Hardening across processes: FSDP2 sharding (``torch.distributed.fsdp.fully_shard``) under torchrun.

``runtime``: the process group, the world (rank and size, from torch.distributed only), the
device mesh and the split of a global batch. ``sharded``: the per-layer sharding and the sharded
operations the single SEAM algorithm (seamharden.core) runs with. docs/distributed.md.
"""

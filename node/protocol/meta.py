"""What the metadata header of each model file must say: the rules that leaders, verifiers and the
audit apply identically (an update that says otherwise is excluded as `wrong_meta`; a global
model's metadata is part of its bytes, so part of its sha256)."""

from __future__ import annotations


def update_meta(task: int, rnd: int, parent_sha: str, member: str) -> dict[str, str]:
    """What an update's metadata must say; an update that says otherwise is excluded (`wrong_meta`)."""
    return {"task": str(task), "round": str(rnd), "parent": parent_sha, "member": member}


def global_meta(task: int, rnd: int, parent_sha: str, rule_id: str) -> dict[str, str]:
    """The metadata of the global model of a round: part of its bytes, so part of its sha256."""
    return {"kind": "global", "task": str(task), "round": str(rnd), "parent": parent_sha, "rule": rule_id}

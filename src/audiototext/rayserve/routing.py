"""SessionAffinityRouter: Serve's consistent-hash router, without its fallback on a slow probe.

Ray 2.60's ``ConsistentHashRouter`` ranks the replica that owns a key on the ring, then the
next ones, and takes the first whose queue-length probe answers in time (100 ms,
``RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S``) with room. On a loaded machine the owner's
probe can miss that deadline while the other replica answers, so a reconnect lands on a
replica that does not hold the session (seen in CI: it then had to restore from the store, or
refused). This router offers the owner alone, retried with the base class's growing deadline
and backoff, and passes a request to the next replicas only once the owner said it is full
(``max_ongoing_requests``) or is gone from the replica set. The ring (keys, hashing, virtual
nodes) is the parent's, so handles that use either class route a key alike.
"""

from __future__ import annotations

from typing import Any

from ray.serve._private.common import ReplicaID
from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter

__all__ = ["SessionAffinityRouter"]


class SessionAffinityRouter(ConsistentHashRouter):
    """Strict affinity unless the owner of a key is full (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # The last queue length each replica reported, as "at its limit": unlike Serve's
        # cache it does not time out, so a full owner keeps spilling until it says otherwise.
        self._full: dict[ReplicaID, bool] = {}

    def _note(self, replica_id: ReplicaID, queue_len: int) -> None:
        replica = self._replicas.get(replica_id)
        if replica is not None:
            self._full[replica_id] = queue_len >= replica.max_ongoing_requests

    def on_new_queue_len_info(self, replica_id: ReplicaID, num_ongoing_requests: int) -> None:
        super().on_new_queue_len_info(replica_id, num_ongoing_requests)
        self._note(replica_id, num_ongoing_requests)

    async def _probe_queue_lens(
        self, replicas: list[Any], backoff_index: int
    ) -> list[tuple[Any, int | None]]:
        results: list[tuple[Any, int | None]] = await super()._probe_queue_lens(
            replicas, backoff_index
        )
        for replica, queue_len in results:
            if queue_len is not None:  # a probe that timed out says nothing about room
                self._note(replica.replica_id, queue_len)
        return results

    def update_replicas(self, replicas: list[Any]) -> None:
        super().update_replicas(replicas)
        for gone in set(self._full) - {r.replica_id for r in replicas}:
            del self._full[gone]

    async def choose_replicas(
        self, candidate_replicas: list[Any], pending_request: Any = None
    ) -> list[list[Any]]:
        ranks: list[list[Any]] = await super().choose_replicas(candidate_replicas, pending_request)
        # The parent already left out an owner no longer in the replica set (died, replaced).
        if len(ranks) > 1 and not self._full.get(ranks[0][0].replica_id, False):
            return ranks[:1]
        return ranks

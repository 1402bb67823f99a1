"""The janitor: removes uploads no index row names, one node at a time.

An upload to S3 is named in ``pending_objects`` before it starts and the name goes in the
transaction that writes its index row (:mod:`dicomtls.node.objects_s3`). A name still there
after ``grace`` seconds belongs to an upload whose node died, or whose index row could not
be written, or to a copy a re-send replaced: no Success was ever sent for it, or it is no
longer the copy on record. The janitor removes the object and then the name.

Safety does not rest on the grace period: the janitor first marks a name *doomed* (one
committed UPDATE), and indexing an upload removes its name only if it is not doomed, in
the same transaction as the row (``dicomtls_add`` answers ``reaped`` otherwise and the node
answers a failure, not Success). Row locks decide which of the two came first. The grace
only spares uploads in flight the cost of being refused.

Every node runs it now and then; a session advisory lock makes it one node at a time (the
others skip their turn). A janitor that dies midway leaves doomed names, which the next
run finishes.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from dicomtls.logs import get_logger
from dicomtls.node.index_pg import JANITOR_LOCK, PostgresIndex
from dicomtls.node.objects_s3 import S3ObjectStore
from dicomtls.node.s3 import S3Error

__all__ = ["DEFAULT_GRACE", "Janitor", "Swept"]

log = get_logger("dicomtls.node")

#: Far longer than any upload may take (the S3 client's timeouts and retries end sooner).
DEFAULT_GRACE = 3600.0


@dataclass(frozen=True)
class Swept:
    removed: int
    """Objects (and their names) removed."""
    settled: int
    """Names whose object turned out to be indexed after all: the name alone went."""
    failed: int
    """Objects S3 would not delete now: their names stay (doomed) for the next run."""


class Janitor:
    def __init__(
        self, index: PostgresIndex, store: S3ObjectStore, *, grace: float = DEFAULT_GRACE
    ) -> None:
        self.index, self.store, self.grace = index, store, grace

    def run(self, grace: float | None = None) -> Swept | None:
        """One pass; None if another node's janitor holds the turn."""
        grace = self.grace if grace is None else grace
        with self.index._connection() as db:  # one connection: the session lock lives on it
            if not db.execute("SELECT pg_try_advisory_lock(%s)", (JANITOR_LOCK,)).fetchone()[0]:
                return None
            try:
                return self._sweep(db, grace)
            finally:
                db.execute("SELECT pg_advisory_unlock(%s)", (JANITOR_LOCK,))

    def _sweep(self, db: object, grace: float) -> Swept:
        execute = db.execute  # type: ignore[attr-defined]
        settled = execute(
            "DELETE FROM pending_objects p WHERE EXISTS "
            "(SELECT 1 FROM instances i WHERE i.path = p.path) RETURNING p.path"
        ).rowcount
        doomed = [
            row[0]
            for row in execute(
                "UPDATE pending_objects p SET doomed = true "
                "WHERE (doomed OR since < now() - %s * interval '1 second') "
                "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.path = p.path) RETURNING path",
                (grace,),
            )
        ]
        removed = failed = 0
        for path in doomed:
            try:
                self.store.client.delete(self.store.location.bucket, path)
            except S3Error as exc:
                failed += 1
                log.warning("janitor: S3 object %s not removed now (%s); next run", path, exc)
                continue
            execute("DELETE FROM pending_objects WHERE path = %s AND doomed", (path,))
            removed += 1
        if removed or failed:
            log.warning(
                "janitor: removed %d upload(s) no index row names (a node died mid-store, or "
                "copies replaced by a re-send)%s",
                removed,
                f"; {failed} left for the next run" if failed else "",
            )
        return Swept(removed, settled, failed)

    async def every(self, interval: float) -> None:
        """Run forever, every ``interval`` seconds (with jitter, so nodes take turns), off the loop."""
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                await asyncio.to_thread(self.run)
            except Exception as exc:  # the index or S3 away: the next turn tries again
                log.warning("janitor: this run failed (%s); next in about %.0f s", exc, interval)

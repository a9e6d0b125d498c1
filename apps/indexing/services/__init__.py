"""Writes of the transcript index (a package).

- sync: index_sync, one run copying ~/.claude into the database (and its lock);
- batches: a batch of transcript lines turned into entry rows and written;
- sessions: session totals, titles and subagent links recomputed from entries;
- wholefiles: todos, task lists and plans, read whole whenever they change;
- txn: the one helper for the index's write transactions.
"""

from apps.indexing.services.sync import (
    IndexBusy,
    Problem,
    SyncReport,
    index_lock,
    index_sync,
    sessions_refinalize,
    sources_snapshot,
)

__all__ = [
    "IndexBusy", "Problem", "SyncReport", "index_lock", "index_sync",
    "sessions_refinalize", "sources_snapshot",
]  # fmt: skip

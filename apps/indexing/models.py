"""The transcript index: Claude Code's own files copied into the database.

Entries are written in bulk by apps.indexing.services (executemany or COPY, not ORM
saves), their original lines and searchable texts packed into Blocks. The full-text
index follows indexing_entry (inserts by the writer; deletes through the tombstones
of migration 0011 on SQLite's FTS5 table indexing_entry_fts, through the triggers of
0012 on PostgreSQL's indexing_entry_tsv) and is used only through apps.indexing.fts.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Project(models.Model):
    # The real working directory from the entries' `cwd`; until one is seen, the
    # (lossy) folder name stands in, with path_known False.
    path = models.TextField(unique=True)
    folder = models.TextField(blank=True, default="")
    path_known = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.path


class Session(models.Model):
    # Main sessions: the transcript's sessionId; subagents: "agent-<agentId>".
    session_id = models.CharField(max_length=200, unique=True)
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sessions",
    )
    is_subagent = models.BooleanField(default=False)
    agent_id = models.CharField(max_length=100, blank=True, default="")
    parent_key = models.CharField(max_length=200, blank=True, default="")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="subagents",
    )
    # The uuid of the parent entry (the Task/Agent tool result) that spawned it.
    spawn_uuid = models.CharField(max_length=64, blank=True, default="")
    title = models.TextField(blank=True, default="")
    title_source = models.CharField(max_length=16, blank=True, default="")
    first_at = models.DateTimeField(null=True, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)
    cli_version = models.CharField(max_length=40, blank=True, default="")
    git_branch = models.CharField(max_length=200, blank=True, default="")
    cwd = models.TextField(blank=True, default="")
    slug = models.CharField(max_length=200, blank=True, default="")
    entry_count = models.PositiveIntegerField(default=0)
    user_count = models.PositiveIntegerField(default=0)
    assistant_count = models.PositiveIntegerField(default=0)
    tool_call_count = models.PositiveIntegerField(default=0)
    # Counted once per message.id + requestId, without <synthetic> or API errors.
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_5m_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["last_at"], name="session_last_at")]

    def __str__(self) -> str:
        return self.session_id


class SourceFile(models.Model):
    class Kind(models.TextChoices):
        TRANSCRIPT = "transcript"
        TODO = "todo"
        TASK = "task"
        PLAN = "plan"
        HISTORY = "history"

    path = models.TextField(unique=True)
    root = models.TextField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    session = models.ForeignKey(
        Session,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sources",
    )
    # Identity and progress: a changed (device, inode) or head, or a size below the
    # offset consumed, means the file was replaced or truncated: read it again.
    device = models.BigIntegerField(default=0)
    inode = models.BigIntegerField(default=0)
    size = models.BigIntegerField(default=0)
    mtime_ns = models.BigIntegerField(default=0)
    offset = models.BigIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    head = models.CharField(max_length=64, blank=True, default="")
    bad_lines = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    missing = models.BooleanField(default=False)
    indexed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.path


class Entry(models.Model):
    source = models.ForeignKey(SourceFile, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.CASCADE, related_name="entries"
    )
    line_no = models.PositiveIntegerField()
    type = models.CharField(max_length=40)
    # user | assistant | tool (a user line holding only tool results) | '' (others).
    role = models.CharField(max_length=16, blank=True, default="")
    uuid = models.CharField(max_length=64, blank=True, default="")
    # parentUuid; for summary and last-prompt lines, the leafUuid they refer to.
    parent_uuid = models.CharField(max_length=64, blank=True, default="")
    timestamp = models.DateTimeField(null=True, blank=True)
    is_sidechain = models.BooleanField(default=False)
    is_meta = models.BooleanField(default=False)
    # isCompactSummary: the summary Claude Code writes as a user line after it
    # compacted the context; not a prompt (see selectors.TURN_START_SQL).
    is_compact_summary = models.BooleanField(default=False)
    agent_id = models.CharField(max_length=100, blank=True, default="")
    # The subagent a Task/Agent tool result reports (toolUseResult.agentId).
    spawned_agent = models.CharField(max_length=100, blank=True, default="")
    request_id = models.CharField(max_length=200, blank=True, default="")
    message_id = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    # The original line and the searchable text (long tool outputs trimmed) live
    # in a compressed Block shared with neighbouring lines of the same file.
    block = models.ForeignKey("Block", on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveIntegerField()
    tools = models.CharField(max_length=500, blank=True, default="")
    # Usage as written on the line (zero for <synthetic> and API-error lines).
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    speed = models.CharField(max_length=16, blank=True, default="")  # usage.speed

    class Meta:
        indexes = [
            models.Index(
                fields=["request_id"],
                name="entry_request_id",
                condition=~Q(request_id=""),
            ),
            models.Index(fields=["uuid"], name="entry_uuid", condition=~Q(uuid="")),
            # Titles: a summary names the session holding its leafUuid.
            models.Index(
                fields=["parent_uuid"],
                name="entry_summary_leaf",
                condition=Q(type="summary"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.uuid}"


class TranscriptCall(models.Model):
    """One API response as a session's transcript has it, for the session page.

    The lines of one message.id + requestId merged as the session totals count
    them (tools of all lines, the largest usage, the first line's model, time and
    uuid), the turn it belongs to (prompts before it, selectors.TURN_START_SQL;
    0 before the first) and its list price. Rebuilt with the session's totals by
    apps.indexing.services.sessions, so a long session's page reads one row per call
    rather than every line. The same call in two files has a row in each; the
    usage ledger (apps.proxy's ApiCall, fed from these rows) counts it once.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="+")
    # The first line's id, not a key: a re-read file replaces its entries.
    entry_id = models.BigIntegerField()
    uuid = models.CharField(max_length=64, blank=True, default="")
    turn = models.PositiveIntegerField()
    timestamp = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=200, blank=True, default="")
    message_id = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    speed = models.CharField(max_length=16, blank=True, default="")
    tools = models.TextField(blank=True, default="")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["session", "turn", "entry_id"], name="call_turn"),
            # A session's figures find the call each relayed exchange stands for
            # (apps.dashboard.selectors.sessions.figures).
            # Not partial: SQLite does not use a partial index for a LEFT JOIN.
            models.Index(fields=["request_id"], name="call_request_id"),
        ]


class EntryFts(models.Model):
    """The FTS5 table over entries' texts and tools (contentless, rowid = id)."""

    id = models.BigIntegerField(primary_key=True, db_column="rowid")
    text = models.TextField()
    tools = models.TextField()

    class Meta:
        managed = False
        db_table = "indexing_entry_fts"


class Todo(models.Model):
    source = models.ForeignKey(SourceFile, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, default="todo")  # todo | task
    session_key = models.CharField(
        max_length=200, blank=True, default="", db_index=True
    )
    agent_id = models.CharField(max_length=100, blank=True, default="")
    position = models.PositiveIntegerField()
    content = models.TextField()
    status = models.CharField(max_length=32, blank=True, default="")
    active_form = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["source_id", "position"]


class Plan(models.Model):
    source = models.OneToOneField(
        SourceFile, on_delete=models.CASCADE, related_name="+"
    )
    slug = models.CharField(max_length=200, db_index=True)
    content = models.TextField()
    modified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-modified_at"]


class Block(models.Model):
    """Consecutive lines of one source file, whole, with their searchable text.

    One zstd frame per ~256 KB of lines (apps.indexing.rawlines.block_pack):
    compressing lines together, rather than one by one, is what keeps the index
    smaller than half of what it copies. Reading an entry unpacks its block.
    """

    source = models.ForeignKey(SourceFile, on_delete=models.CASCADE, related_name="+")
    data = models.BinaryField()

"""claudemon's figures in Claude Code's status line.

Claude Code runs the `statusLine` command on every refresh and passes the
session's JSON on standard input; it prints one line: the session's cost,
today's cost, the active 5-hour block's cost, time left and burn rate, and the
5-hour and weekly utilization the relay last saw.

Why not a management command: Django's start-up alone took longer than the
100 ms a status line may take (bench/usage.py measures this script as a whole
process). So this runs on the standard library only (`python -I -S`), reads the
SQLite file read-only, and shares its SQL (apps.dashboard.sql), block rule
(apps.dashboard.blocks) and formatting (apps.dashboard.terminal) with the rest.
On PostgreSQL (--db or CLAUDEMON_DATABASE_URL a postgres:// URL) it adds the
interpreter's site-packages for psycopg, the one library it then needs.
It never prints a traceback into the user's status line: any failure prints a
short fallback and exits 0.

    python -I -S /path/to/claudemon/apps/dashboard/statusline.py [--db PATH|URL]
        [--tz ZONE]
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script with -I: the checkout is not on it
    sys.path.insert(0, str(ROOT))

from apps.dashboard import sql  # noqa: E402
from apps.dashboard.blocks import Activity, blocks_build  # noqa: E402
from apps.dashboard.terminal import money, span, zone_local_name  # noqa: E402

_WINDOW = timedelta(hours=48)  # calls read to find the active block's start
_BUSY_MS = 50  # wait this long for a locked database, then fall back


def database_path(arguments: list[str]) -> Path | str:
    """Return the database: --db (a file or a postgres:// URL),
    CLAUDEMON_DATABASE_URL, CLAUDEMON_DB_PATH, or the var folder's file (the same
    defaults as claudemon.settings.base)."""
    if "--db" in arguments:
        target = arguments[arguments.index("--db") + 1]
        return target if _is_url(target) else Path(target)
    if os.environ.get("CLAUDEMON_DATABASE_URL"):
        return os.environ["CLAUDEMON_DATABASE_URL"]
    if os.environ.get("CLAUDEMON_DB_PATH"):
        return Path(os.environ["CLAUDEMON_DB_PATH"])
    var = Path(os.environ.get("CLAUDEMON_VAR_DIR") or ROOT / "var")
    return var / "claudemon.sqlite3"


def _is_url(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


class _Reader:
    """The one read-only connection, SQLite or PostgreSQL, and its SQL forms."""

    def __init__(self, db: Path | str) -> None:
        if isinstance(db, Path):
            uri = f"file:{db}?mode=ro"
            self.db: Any = sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000)
            self.sql, self.mark = sql.on("sqlite"), "?"
            return
        try:
            import psycopg
        except ImportError:  # run with -S: the interpreter's site-packages hold it
            import site

            site.main()
            import psycopg
        self.db = psycopg.connect(
            db,
            autocommit=True,
            connect_timeout=2,
            options=f"-c lock_timeout={_BUSY_MS} -c statement_timeout=2000",
            cursor_factory=psycopg.ClientCursor,  # as Django binds: literals
        )
        self.sql, self.mark = sql.on("postgresql"), "%s"

    def run(self, statement: str, params: list[Any] | None = None) -> Any:
        """Execute a statement of apps.dashboard.sql (%s marks); return the cursor."""
        params = params or []
        if self.mark == "?":
            statement = statement.replace("%s", "?")
            params = [_stored(p) if isinstance(p, datetime) else p for p in params]
        return self.db.execute(statement, params)

    def close(self) -> None:
        self.db.close()


def _stored(moment: datetime) -> str:
    """Return an instant as SQLite's ledger stores it (naive UTC text, sortable)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _moment(value: str | datetime) -> datetime:
    if isinstance(value, datetime):  # PostgreSQL's timestamptz
        return value.astimezone(UTC)
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def status_line(
    *, db: Path | str, session_id: str, zone: ZoneInfo, now: datetime
) -> str:
    """Return the status line's text for a session."""
    if isinstance(db, Path) and not db.is_file():
        return "claudemon: no database yet (make run)"
    reader = _Reader(db)
    try:
        if reader.run(reader.sql.STATUS_ANY).fetchone() is None:
            return "claudemon: no calls recorded yet"
        quarters = _quarters(reader, now)
        midnight = datetime.combine(now.astimezone(zone).date(), time(), tzinfo=zone)
        today = [q for q in quarters if q.first_at >= midnight]
        parts = [
            _session_part(reader, session_id),
            f"{money(sum(q.cost_usd for q in today), sum(q.unpriced for q in today))}"
            " today",
            _block_part(quarters, now),
            _limits_part(reader, now),
        ]
    finally:
        reader.close()
    return " · ".join(part for part in parts if part)


def _quarters(reader: _Reader, now: datetime) -> list[Activity]:
    """Return the last _WINDOW's Messages calls as quarter-hour activity, read
    as every usage figure is (apps.dashboard.sql.SUMS: rollups, dirty quarters
    from the ledger)."""
    name, keys = sql.TABLES["usage"]
    statement = reader.sql.SUMS.format(
        group="quarter", comma=", ", where=" AND kind = %s",
        group_by="GROUP BY quarter", table=name, keys=", ".join(keys),
    )  # fmt: skip
    start = now - _WINDOW
    rolled, live = sql.quarter_bounds(int(start.timestamp()), int(now.timestamp()))
    rows = reader.run(statement, [*rolled, "messages", *live, start, now, "messages"])
    names = [column[0] for column in rows.description]
    return [_activity(dict(zip(names, row, strict=True))) for row in rows if row[1]]


def _activity(row: dict) -> Activity:
    tokens = sum(
        row[c] for c in ("input_tokens", "output_tokens", "cache_read_tokens",
                         "cache_write_5m_tokens", "cache_write_1h_tokens")
    )  # fmt: skip
    return Activity(
        _moment(row["first_at"]), _moment(row["last_at"]), row["calls"], tokens,
        row["cost_usd"], row["unpriced_calls"],
    )  # fmt: skip


def _session_part(reader: _Reader, session_id: str) -> str:
    if not session_id:
        return ""
    statement = reader.sql.SESSIONS_SELECT.format(where=" AND session_id = %s")
    row = reader.run(statement, [session_id]).fetchone()
    if row is None:
        return f"{money(0.0)} session"
    found = dict(zip(sql.SESSION_COLUMNS, row, strict=True))
    return f"{money(found['cost_usd'], found['unpriced_calls'])} session"


def _block_part(quarters: list[Activity], now: datetime) -> str:
    active = next((b for b in blocks_build(quarters) if b.is_active(now)), None)
    if active is None:
        return "no active block"
    left = span((active.end - now).total_seconds() / 60)
    burn = active.burn(now)
    rate = f", {money(burn['cost_per_hour'])}/h" if burn else ""
    return f"{money(active.cost_usd, active.unpriced)} block ({left} left{rate})"


def _limits_part(reader: _Reader, now: datetime) -> str:
    row = reader.run(reader.sql.STATUS_LIMITS, [now]).fetchone()
    if row is None:
        return ""
    five, _reset, seven = row
    parts = [f"5h {five * 100:.0f}%"]
    if seven is not None:
        parts.append(f"7d {seven * 100:.0f}%")
    return " ".join(parts)


def _session_of(stdin_text: str) -> str:
    try:
        document = json.loads(stdin_text) if stdin_text.strip() else {}
    except ValueError:
        return ""
    session = document.get("session_id") if isinstance(document, dict) else None
    return session if isinstance(session, str) else ""


def main(arguments: list[str]) -> int:
    """Print the status line; exit 0 whatever happens."""
    try:
        zone_name = (
            arguments[arguments.index("--tz") + 1] if "--tz" in arguments else ""
        )
        zone = ZoneInfo(zone_name or zone_local_name())
        session_id = _session_of(sys.stdin.read() if not sys.stdin.isatty() else "")
        line = status_line(
            db=database_path(arguments),
            session_id=session_id,
            zone=zone,
            now=datetime.now(UTC),
        )
    except Exception as exc:  # noqa: BLE001 - never a traceback in the status line
        line = _fallback(exc)
    print(line)
    return 0


def _fallback(exc: Exception) -> str:
    """Return the short line for a failure: busy (a lock held too long: SQLite's
    busy timeout, PostgreSQL's lock_timeout), no data, or unavailable."""
    text, kind = str(exc), type(exc).__name__
    if "locked" in text or "busy" in text or kind == "LockNotAvailable":
        return "claudemon: database busy"
    if isinstance(exc, sqlite3.DatabaseError) or kind == "OperationalError":
        return "claudemon: no data"
    return "claudemon: unavailable"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

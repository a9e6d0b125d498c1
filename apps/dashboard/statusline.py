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
It never prints a traceback into the user's status line: any failure prints a
short fallback and exits 0.

    python -I -S /path/to/claudemon/apps/dashboard/statusline.py [--db PATH] [--tz ZONE]
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script with -I: the checkout is not on it
    sys.path.insert(0, str(ROOT))

from apps.dashboard import sql  # noqa: E402
from apps.dashboard.blocks import Activity, blocks_build  # noqa: E402
from apps.dashboard.terminal import money, span, zone_local_name  # noqa: E402

_WINDOW = timedelta(hours=48)  # calls read to find the active block's start
_BUSY_MS = 50  # wait this long for a locked database, then fall back


def database_path(arguments: list[str]) -> Path:
    """Return the SQLite file: --db, CLAUDEMON_DB_PATH, or the var folder's
    (the same defaults as claudemon.settings.base)."""
    if "--db" in arguments:
        return Path(arguments[arguments.index("--db") + 1])
    if os.environ.get("CLAUDEMON_DB_PATH"):
        return Path(os.environ["CLAUDEMON_DB_PATH"])
    var = Path(os.environ.get("CLAUDEMON_VAR_DIR") or ROOT / "var")
    return var / "claudemon.sqlite3"


def _stored(moment: datetime) -> str:
    """Return an instant as the ledger stores it (naive UTC text, sortable)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def status_line(*, db: Path, session_id: str, zone: ZoneInfo, now: datetime) -> str:
    """Return the status line's text for a session."""
    if not db.is_file():
        return "claudemon: no database yet (make run)"
    uri = f"file:{db}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000) as connection:
        if connection.execute(sql.STATUS_ANY).fetchone() is None:
            return "claudemon: no calls recorded yet"
        quarters = _quarters(connection, now)
        midnight = datetime.combine(now.astimezone(zone).date(), time(), tzinfo=zone)
        today = [q for q in quarters if q.first_at >= midnight]
        parts = [
            _session_part(connection, session_id),
            f"{money(sum(q.cost_usd for q in today), sum(q.unpriced for q in today))}"
            " today",
            _block_part(quarters, now),
            _limits_part(connection, now),
        ]
    return " · ".join(part for part in parts if part)


def _quarters(connection: sqlite3.Connection, now: datetime) -> list[Activity]:
    """Return the last _WINDOW's Messages calls as quarter-hour activity, read
    as every usage figure is (apps.dashboard.sql.SUMS: rollups, dirty quarters
    from the ledger)."""
    name, keys = sql.TABLES["usage"]
    statement = sql.SUMS.format(
        group="quarter", comma=", ", where=" AND kind = ?", group_by="GROUP BY quarter",
        table=name, keys=", ".join(keys),
    ).replace("%s", "?")  # fmt: skip
    start = now - _WINDOW
    rolled, live = sql.quarter_bounds(int(start.timestamp()), int(now.timestamp()))
    rows = connection.execute(
        statement,
        [*rolled, "messages", *live, _stored(start), _stored(now), "messages"],
    )
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


def _session_part(connection: sqlite3.Connection, session_id: str) -> str:
    if not session_id:
        return ""
    statement = sql.SESSIONS_SELECT.format(where=" AND session_id = ?")
    row = connection.execute(statement.replace("%s", "?"), [session_id]).fetchone()
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


def _limits_part(connection: sqlite3.Connection, now: datetime) -> str:
    row = connection.execute(sql.STATUS_LIMITS, [_stored(now)]).fetchone()
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
    except sqlite3.DatabaseError as exc:
        busy = "locked" in str(exc) or "busy" in str(exc)
        line = "claudemon: database busy" if busy else "claudemon: no data"
    except Exception:  # noqa: BLE001 - never a traceback in the status line
        line = "claudemon: unavailable"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

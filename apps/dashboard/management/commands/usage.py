"""`manage.py usage daily|weekly|monthly|session|project|model|blocks`: the usage
reports on a terminal or as JSON, read from the ledger directly (no server)."""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection
from django.utils import timezone
from pydantic import BaseModel

from apps.dashboard import schemas
from apps.dashboard.selectors import reports
from apps.dashboard.selectors.ledger import Scope
from apps.dashboard.terminal import report_table, zone_local_name
from apps.indexing import selectors as index
from apps.indexing.services import IndexBusy, index_sync
from apps.proxy.selectors import EVERYONE

REPORTS: dict[str, type[BaseModel]] = {
    "daily": schemas.PeriodReportOut, "weekly": schemas.PeriodReportOut,
    "monthly": schemas.PeriodReportOut, "session": schemas.SessionReportOut,
    "project": schemas.ProjectReportOut, "model": schemas.ModelReportOut,
    "blocks": schemas.BlocksReportOut,
}  # fmt: skip


class Command(BaseCommand):
    help = (
        "Usage reports from the ledger: every API call once, the relay's figures "
        "where it saw the call, else the transcript's. Dates are local to --tz; "
        "--until is inclusive. Brings the transcript index up to date first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("report", choices=sorted(REPORTS))
        parser.add_argument("--since", help="first day, e.g. 2026-11-01")
        parser.add_argument("--until", help="last day (inclusive), e.g. 2026-11-30")
        parser.add_argument(
            "--tz", default="", help="IANA zone (default: this machine's)"
        )
        parser.add_argument("--project", default="", help="a project id or path")
        parser.add_argument("--model", default="", help="an exact model id")
        parser.add_argument("--week-start", default="monday", choices=schemas.WEEKDAYS)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--no-refresh", action="store_true", help="skip indexing transcripts"
        )

    def handle(self, *args: object, **options: object) -> None:
        _database_check()
        zone = _zone(str(options["tz"]) or zone_local_name())
        if not options["no_refresh"]:
            self._refresh()
        scope = _scope(options, zone=zone)
        report = _build(str(options["report"]), scope, zone, options)
        schema = REPORTS[str(options["report"])]
        document = schema.model_validate(report).model_dump(mode="json", by_alias=True)
        if options["json"]:
            self.stdout.write(json.dumps(document, indent=2))
        else:
            self.stdout.write(report_table(document, zone=zone))

    def _refresh(self) -> None:
        try:
            index_sync(wait=False)
        except IndexBusy:  # reindex --watch is at it: its pass will land soon
            self.stderr.write("usage: the indexer is running; reading as it is.")


def _database_check() -> None:
    """Fail with a clear message when there is no migrated database to read."""
    path = settings.DATABASES["default"]["NAME"]
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine.endswith("sqlite3") and not _exists(path):
        raise CommandError(
            f"No claudemon database at {path}. Start claudemon once with "
            "`make run` (or run `manage.py migrate`), then try again."
        )
    try:
        tables = connection.introspection.table_names()
    except DatabaseError as exc:
        raise CommandError(f"Cannot read the claudemon database: {exc}") from None
    if "proxy_apicall" not in tables:
        raise CommandError(
            f"The database at {path} is not set up: run `manage.py migrate` first."
        )


def _exists(path: object) -> bool:
    return Path(str(path)).is_file()


def _zone(name: str) -> ZoneInfo:
    try:
        return schemas.zone_parse(name)
    except ValueError as exc:
        raise CommandError(f"--tz: {exc}") from None


def _day(text: object, name: str) -> date | None:
    if not text:
        return None
    value = str(text)
    try:
        if len(value) == 8 and value.isdigit():  # ccusage's 20261101 form
            value = f"{value[:4]}-{value[4:6]}-{value[6:]}"
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{name} {text!r} is not a date like 2026-11-01.") from None


def _scope(options: dict, *, zone: ZoneInfo) -> Scope:
    today = timezone.now().astimezone(zone).date()
    until = _day(options["until"], "--until") or today
    default = timedelta(days=365 if options["report"] == "monthly" else 29)
    since = _day(options["since"], "--since") or until - default
    if since > until:
        raise CommandError("--since must not be after --until.")
    start, end = reports.day_range(since=since, until=until, zone=zone)
    # The command runs on the server, as its operator: everyone's calls.
    return Scope(
        start, end, model=str(options["model"]) or None,
        project_id=_project(str(options["project"])), viewer=EVERYONE,
    )  # fmt: skip


def _project(text: str) -> int | None:
    """Return the project named by an id, a path or the end of one."""
    if not text:
        return None
    projects = index.project_list(visible=None)
    found = [
        p for p in projects
        if str(p.pk) == text or p.path == text or p.path.endswith("/" + text)
    ]  # fmt: skip
    if len(found) != 1:
        names = ", ".join(p.path for p in projects[:10]) or "none indexed yet"
        which = "matches several" if found else "matches none"
        raise CommandError(f"--project {text!r} {which} of: {names}.")
    return found[0].pk


def _build(report: str, scope: Scope, zone: ZoneInfo, options: dict) -> dict:
    if report in ("daily", "weekly", "monthly"):
        week_start = schemas.WEEKDAYS.index(str(options["week_start"]))
        return reports.report_periods(
            scope=scope, zone=zone, report=report, week_start=week_start
        )
    if report == "session":
        return reports.report_sessions(
            scope=scope, zone=zone, limit=sys.maxsize, offset=0
        )
    if report == "project":
        return reports.report_projects(scope=scope, zone=zone)
    if report == "model":
        return reports.report_models(scope=scope, zone=zone)
    return reports.report_blocks(scope=scope, zone=zone, now=timezone.now())

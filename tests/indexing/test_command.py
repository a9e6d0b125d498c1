from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import database_env, wait_for
from tests.indexing.conftest import conversation_write

pytestmark = pytest.mark.django_db

SUMMARY = re.compile(
    r"^(\d+) files scanned, (\d+) changed, (\d+) entries added, (\d+) bad lines skipped"
    r".*, [\d.]+s, [\d,]+ entries/s$"
)


def _reindex(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("reindex", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_ends_with_a_summary_line_and_names_bad_lines(claude_tree) -> None:
    t = conversation_write(claude_tree)
    t.write(b"{oops")
    out, err = _reindex()
    match = SUMMARY.match(out.strip().splitlines()[-1])
    assert match and match.groups() == ("1", "1", "11", "1")
    assert f"{t.path}:12: malformed JSON" in err


def test_it_is_incremental_then_full(claude_tree) -> None:
    conversation_write(claude_tree)
    _reindex("--quiet")
    out, _ = _reindex("--quiet")
    assert SUMMARY.match(out.strip()).groups() == ("1", "0", "0", "0")
    out, _ = _reindex("--full")
    assert SUMMARY.match(out.strip()).groups() == ("1", "1", "11", "0")


def test_it_prunes_only_when_asked(claude_tree) -> None:
    t = conversation_write(claude_tree)
    _reindex()
    t.path.unlink()
    out, _ = _reindex()
    assert "1 sources missing (kept)" in out
    out, _ = _reindex("--prune")
    assert "1 pruned" in out


@pytest.mark.django_db(transaction=True)
def test_it_watches_and_picks_up_new_directories(claude_tree) -> None:
    from apps.indexing.models import Entry

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "claudemon.settings.data",
        **database_env(),
        "CLAUDEMON_CLAUDE_DIRS": str(claude_tree.root),
    }
    watcher = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "reindex",
            "--watch",
            "--interval",
            "0.2",
            "--quiet",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: watcher.poll() is None and Entry.objects.count() == 0)
        t = conversation_write(claude_tree, cwd="/a/directory/created/later")
        wait_for(lambda: Entry.objects.count() == 11, timeout=60)
        t.user("one more line")
        wait_for(lambda: Entry.objects.count() == 12, timeout=60)
    finally:
        watcher.terminate()
        out, err = watcher.communicate(timeout=20)
    assert "entries added" in out.decode()

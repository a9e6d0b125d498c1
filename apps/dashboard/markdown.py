"""A tiny Markdown renderer for plan files that escapes everything first.

Plans are written by the model and may hold any text, HTML included. Every line
is HTML-escaped before any markup is added, and the only markup added is ours:
headings, lists, fenced code blocks, paragraphs, inline code, strong and
emphasis, and links whose target starts with http:// or https://. Nothing of
the file's own HTML can therefore run or even render as a tag. The subset
follows https://spec.commonmark.org/ loosely; unknown syntax stays plain text.
"""

from __future__ import annotations

import html
import re

from django.utils.safestring import SafeString, mark_safe

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_EM = re.compile(
    r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\*)|(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"
)
# Runs on escaped text: a URL's & is already &amp;, quotes are &quot; (never a
# way out of the attribute), and only http(s) targets become links.
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s()<>\"]+)\)")
_PLACEHOLDER = "\x00{}\x00"


def markdown_html(text: str) -> SafeString:
    """Return the HTML of a Markdown text; the input is escaped before formatting."""
    out: list[str] = []
    lines = (text or "").replace("\r\n", "\n").split("\n")
    paragraph: list[str] = []
    items: list[str] = []
    list_tag = ""
    i = 0

    def flush() -> None:
        nonlocal list_tag
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            body = "".join(f"<li>{inline(item)}</li>" for item in items)
            out.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
            list_tag = ""

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            code, i = _fenced(lines, i + 1, fence.group(1))
            lang = html.escape(fence.group(2))
            attr = f' data-lang="{lang}"' if lang else ""
            code_html = html.escape(code)
            out.append(f'<pre class="code"{attr}><code>{code_html}</code></pre>')
            continue
        heading = _HEADING.match(line)
        bullet, numbered = _BULLET.match(line), _NUMBERED.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif item := bullet or numbered:
            tag = "ul" if bullet else "ol"
            if paragraph or (list_tag and list_tag != tag):
                flush()
            list_tag = tag
            items.append(item.group(1))
        elif not line.strip():
            flush()
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()
        else:
            if items:
                flush()
            paragraph.append(line.strip())
        i += 1
    flush()
    # Safe: every piece of the file's text above went through inline() or
    # html.escape(); the tags are the literals of this module.
    return mark_safe("\n".join(out))  # noqa: S308


def _fenced(lines: list[str], start: int, marker: str) -> tuple[str, int]:
    """Return the code up to the closing fence (or the end) and the next index."""
    end = start
    while end < len(lines) and not lines[end].lstrip().startswith(marker):
        end += 1
    return "\n".join(lines[start:end]), end + 1


def inline(text: str) -> str:
    """Escape a line, then add code spans, links, strong and emphasis."""
    codes: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        codes.append(f"<code>{match.group(1)}</code>")
        return _PLACEHOLDER.format(len(codes) - 1)

    escaped = html.escape(text.replace("\x00", ""), quote=True)
    escaped = _CODE.sub(keep_code, escaped)
    escaped = _LINK.sub(
        lambda m: f'<a href="{m.group(2)}" rel="nofollow noreferrer">{m.group(1)}</a>',
        escaped,
    )
    escaped = _STRONG.sub(
        lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", escaped
    )
    escaped = _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", escaped)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], escaped)

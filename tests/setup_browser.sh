#!/usr/bin/env bash
# What the suite drives besides Python: Debian's Chromium (Playwright's own download
# cannot work here) for the browser tests, Debian's HAProxy for the front door tests,
# and the real Claude Code CLI (pinned) for the front door's end-to-end test.
# Installs each once; a no-op when they are all present.
set -euo pipefail
CLAUDE_CODE_VERSION=2.1.197
CLAUDE_CODE_PREFIX=/tmp/cc
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "${missing[*]} not installed and cannot be installed here; their tests will be skipped" >&2
  fi
fi
if ! command -v claude >/dev/null 2>&1 && [ ! -x "$CLAUDE_CODE_PREFIX/node_modules/.bin/claude" ]; then
  if command -v npm >/dev/null 2>&1; then
    npm install --silent --prefix "$CLAUDE_CODE_PREFIX" "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null
  else
    echo "npm is missing: the Claude Code CLI test will be skipped" >&2
  fi
fi

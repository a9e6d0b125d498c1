"""claudemon: a transparent relay and dashboard for Claude Code's API traffic."""

__version__ = "0.1.0"

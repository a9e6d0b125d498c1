"""Shared fixtures: the fake Anthropic upstream, a running relay, sample data."""

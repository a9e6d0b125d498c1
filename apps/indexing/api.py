"""Transcript search and browse API (ninja Router mounted under /api/)."""

from ninja import Router

router = Router(tags=["transcripts"])

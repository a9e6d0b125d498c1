"""Stats API (ninja Router mounted under /api/ by claudemon.api)."""

from ninja import Router

router = Router(tags=["stats"])

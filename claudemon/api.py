"""The one NinjaAPI of the data deployment; each app contributes a Router."""

from ninja import NinjaAPI

from apps.dashboard.api import router as stats_router
from apps.indexing.api import router as transcripts_router

api = NinjaAPI(title="claudemon", version="1", urls_namespace="api")
api.add_router("", stats_router)
api.add_router("", transcripts_router)

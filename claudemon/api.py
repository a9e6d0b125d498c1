"""The one NinjaAPI of the data deployment; each app contributes a Router.

Auth is set here, on the NinjaAPI, so every router (stats, transcripts, any
later one) inherits it: a logged-in session (CSRF-checked for unsafe methods)
or `Authorization: Bearer <API token>`. Anonymous requests get 401 JSON; the
OpenAPI schema and docs need a login too.
"""

from ninja import NinjaAPI

from apps.dashboard.api import router as stats_router
from apps.dashboard.auth import api_auth, docs_login_required
from apps.indexing.api import router as transcripts_router

api = NinjaAPI(
    title="claudemon",
    version="1",
    urls_namespace="api",
    auth=api_auth(),
    docs_decorator=docs_login_required,
)
api.add_router("", stats_router)
api.add_router("", transcripts_router)

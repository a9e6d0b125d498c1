"""The profile page: a user claims the API keys and OAuth tokens they call with.

A claim keeps only the credential's fingerprint (apps.dashboard.services
claim_add), and from then on the calls sent with it are the user's: the only
calls they see if they are not staff (apps.proxy.selectors.Viewer).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.dashboard import page_state, services
from apps.dashboard.page_state import render_page
from apps.dashboard.selectors.claims import claim_list


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """List the user's claims; POST claims a pasted credential or drops a claim."""
    problems: list[str] = []
    user = request.user
    assert isinstance(user, User)  # login_required: never anonymous here
    if request.method == "POST":
        remove = page_state.int_param(request.POST, "remove", low=1)
        if remove is not None:
            services.claim_remove(user=user, claim_id=remove)
            return HttpResponseRedirect(reverse("dashboard:profile"))
        try:
            services.claim_add(
                user=user,
                secret=request.POST.get("secret", ""),
                label=request.POST.get("label", ""),
            )
        except services.ClaimError as exc:
            problems.append(str(exc))
        else:  # POST/redirect/GET: a reload never re-posts the secret
            return HttpResponseRedirect(reverse("dashboard:profile"))
    context = {"claims": claim_list(user=request.user), "problems": problems}
    zone = page_state.zone_from_request(request)
    response = render_page(request, "dashboard/profile.html", context, zone=zone)
    if problems:
        response.status_code = 400
    return response

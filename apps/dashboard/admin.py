"""API tokens in the admin: create (the secret is shown once), revoke, list."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html

from apps.dashboard import services
from apps.dashboard.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "user",
        "name",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple:
        # Once created, a token's owner never changes; only its name may.
        return self.readonly_fields + (("user",) if obj else ())

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        raw = None if change else services.apitoken_fill(token=obj)
        super().save_model(request, obj, form, change)
        if raw:
            self.message_user(
                request,
                format_html(
                    "API token for {}: <code>{}</code> — copy it now, it is stored "
                    "hashed and will not be shown again. Use it as "
                    "<code>Authorization: Bearer {}</code>.",
                    obj.user,
                    raw,
                    raw,
                ),
                messages.WARNING,
            )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            services.apitoken_revoke(token=token)
        self.message_user(request, f"Revoked {len(queryset)} token(s).")

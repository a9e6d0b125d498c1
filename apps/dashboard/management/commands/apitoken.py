"""`manage.py apitoken create|revoke|list`: API tokens for scripts."""

from __future__ import annotations

from argparse import ArgumentParser

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.dashboard import selectors, services


class Command(BaseCommand):
    help = "Create, revoke or list API tokens (Authorization: Bearer <token>)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create a token for a user")
        create.add_argument("username")
        create.add_argument("--name", default="", help="what the token is for")
        revoke = actions.add_parser("revoke", help="revoke a token by id or prefix")
        revoke.add_argument("token", help="the id or the prefix shown by `list`")
        listing = actions.add_parser("list", help="list tokens")
        listing.add_argument("--user", default="", help="only this user's tokens")

    def handle(self, *args: object, **options: object) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options: dict) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"No user {options['username']!r}.") from None
        token, raw = services.apitoken_create(user=user, name=options["name"])
        self.stdout.write(f"Token {token.pk} for {user}: {raw}")
        self.stdout.write("Copy it now: it is stored hashed and cannot be shown again.")

    def _revoke(self, options: dict) -> None:
        tokens = selectors.apitoken_find(key=options["token"])
        if len(tokens) != 1:
            raise CommandError(
                f"{len(tokens)} tokens match {options['token']!r}; give the id."
            )
        services.apitoken_revoke(token=tokens[0])
        self.stdout.write(f"Revoked token {tokens[0].pk} ({tokens[0].prefix}...).")

    def _list(self, options: dict) -> None:
        for token in selectors.apitoken_list(username=options["user"]):
            state = "revoked" if token.revoked_at else "active"
            used = token.last_used_at.isoformat() if token.last_used_at else "never"
            self.stdout.write(
                f"{token.pk}\t{token.prefix}...\t{token.user}\t{token.name or '-'}\t"
                f"{state}\tlast used {used}"
            )

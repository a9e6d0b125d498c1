from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class IndexingConfig(AppConfig):
    name = "apps.indexing"
    label = "indexing"
    verbose_name = "Transcript index"

    def ready(self) -> None:
        connection_created.connect(_sql_functions_register)


def _sql_functions_register(
    sender: object, connection: object, **kwargs: object
) -> None:
    """Give SQLite indexing_text(): an entry's text from its compressed block."""
    # Only migrations 0003-0006 (and going back past 0010) use it: since 0010 no
    # view or trigger does, so other programs can use the database file.
    if getattr(connection, "vendor", "") != "sqlite":
        return
    from apps.indexing.rawlines import block_text

    connection.connection.create_function("indexing_text", 3, block_text)

"""Failed logins, counted per username and per address by the login throttle."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0006_ledger_rollups"),
    ]

    operations = [
        migrations.CreateModel(
            name="LoginFailure",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("username", models.CharField(max_length=150)),
                ("address", models.CharField(max_length=64)),
                ("at", models.DateTimeField()),
            ],
            options={
                "indexes": [
                    models.Index(fields=["username", "at"], name="loginfailure_user"),
                    models.Index(
                        fields=["address", "at"], name="loginfailure_address"
                    ),
                    models.Index(fields=["at"], name="loginfailure_at"),
                ],
            },
        ),
    ]

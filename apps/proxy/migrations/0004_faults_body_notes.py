"""Notes on what the recorder could not keep or read of a body (issue 11)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("proxy", "0003_status_index")]

    operations = [
        migrations.AddField(
            model_name="exchange",
            name="request_body_note",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="exchange",
            name="response_body_note",
            field=models.TextField(blank=True, default=""),
        ),
    ]

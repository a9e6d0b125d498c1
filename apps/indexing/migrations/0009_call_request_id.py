"""Index calls by request-id: a session's figures look up, for each exchange the
relay recorded under the session's id, the transcript call it stands for."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('indexing', '0008_call'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='call',
            index=models.Index(fields=['request_id'], name='call_request_id'),
        ),
    ]

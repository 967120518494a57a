"""The default cache (rate limits, used TOTP codes) lives in PostgreSQL: create its table here so
that `migrate` on a fresh clone or a new deployment is all it takes."""

from django.conf import settings
from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def drop_cache_table(apps, schema_editor) -> None:
    table = schema_editor.quote_name(getattr(settings, "CACHE_TABLE", "portal_cache"))
    schema_editor.execute(f"DROP TABLE IF EXISTS {table}")


class Migration(migrations.Migration):
    dependencies = [("portal", "0006_institutional_domain_organisation")]

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]

"""Jupyter sessions per grant × member on unix sockets; the token is no longer stored, only a
nonce it is derived from (new on every start)."""

import secrets

from django.db import migrations, models


def give_each_session_a_nonce(apps, schema_editor) -> None:
    """Existing sessions get their own nonce; their servers still run with the old token on a
    TCP port until the next start (reconcile starts one, which stops the old server)."""
    JupyterSession = apps.get_model("allocations", "JupyterSession")
    for session in JupyterSession.objects.all():
        session.token_nonce = secrets.token_hex(16)
        session.save(update_fields=["token_nonce"])


class Migration(migrations.Migration):
    dependencies = [
        ("allocations", "0006_unix_ids_and_gpu_groups"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="jupytersession", name="jupyter_port_unique_per_node"),
        migrations.RemoveConstraint(model_name="jupytersession", name="jupyter_one_live_per_grant"),
        migrations.RemoveField(model_name="jupytersession", name="port"),
        migrations.RemoveField(model_name="jupytersession", name="token"),
        migrations.AddField(
            model_name="jupytersession",
            name="socket_path",
            field=models.CharField(blank=True, max_length=200, verbose_name="socket"),
        ),
        migrations.AddField(
            model_name="jupytersession",
            name="token_nonce",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(give_each_session_a_nonce, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="jupytersession",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state", "stopped"), _negated=True),
                fields=("grant", "account"),
                name="jupyter_one_live_per_grant_member",
            ),
        ),
    ]

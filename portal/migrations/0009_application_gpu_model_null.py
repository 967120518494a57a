"""An application without a GPU model held "" in its text column; the foreign key to GpuModel
(next migration) keeps "none chosen" as NULL. A migration of its own: PostgreSQL refuses to add a
constraint to a table with row changes pending in the same transaction."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("allocations", "0013_gpu_models_as_rows"),
        ("portal", "0008_list_order_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="application",
            name="gpu_model",
            field=models.CharField(blank=True, max_length=32, null=True, verbose_name="GPU model"),
        ),
        migrations.RunSQL(
            "UPDATE portal_application SET gpu_model = NULL WHERE gpu_model = ''",
            "UPDATE portal_application SET gpu_model = '' WHERE gpu_model IS NULL",
        ),
    ]

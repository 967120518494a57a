"""GPU models become rows: the table, the four models the portal lent until now (with the NVML
product names their GPUs report), and a row for any other code already stored in a model column,
so the foreign keys added next (here and in portal and billing) never meet an unknown code."""

import re

import django.contrib.postgres.fields
import django.core.validators
import django.utils.timezone
from django.db import migrations, models

# code, name, memory (GiB), NVML product names
KNOWN = [
    ("A100-80GB", "NVIDIA A100 80GB", 80, ["NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"]),
    ("H100-80GB", "NVIDIA H100 80GB", 80, ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"]),
    ("H200-141GB", "NVIDIA H200 141GB", 141, ["NVIDIA H200", "NVIDIA H200 NVL"]),
    ("B200-180GB", "NVIDIA B200 180GB", 180, ["NVIDIA B200"]),
]

# Every column that held a GPU model code before this change (table, column).
MODEL_COLUMNS = [
    ("allocations_node", "gpu_model"),
    ("allocations_gpu", "model"),
    ("allocations_grant", "gpu_model"),
    ("portal_callbudget", "gpu_model"),
    ("portal_application", "gpu_model"),
    ("billing_rate", "gpu_model"),
    ("billing_hourpack", "gpu_model"),
]


def stored_codes(connection) -> set[str]:
    tables = set(connection.introspection.table_names())
    codes: set[str] = set()
    with connection.cursor() as cursor:
        for table, column in MODEL_COLUMNS:
            if table in tables:
                cursor.execute(f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" <> \'\'')  # noqa: S608
                codes.update(row[0] for row in cursor.fetchall() if row[0])
    return codes


def insert_models(apps, schema_editor):
    GpuModel = apps.get_model("allocations", "GpuModel")
    for code, name, memory, nvml in KNOWN:
        GpuModel.objects.get_or_create(code=code, defaults={"name": name, "memory_gib": memory, "nvml_names": nvml})
    for code in sorted(stored_codes(schema_editor.connection)):
        memory = re.search(r"(\d+)\s*GB", code, re.IGNORECASE)
        GpuModel.objects.get_or_create(
            code=code, defaults={"name": code, "memory_gib": int(memory.group(1)) if memory else 1, "nvml_names": []}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("allocations", "0012_task_list_order_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="GpuModel",
            fields=[
                (
                    "code",
                    models.CharField(
                        help_text="Short and permanent, e.g. H100-80GB.",
                        max_length=32,
                        primary_key=True,
                        serialize=False,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$",
                                "A code has letters, digits, dots, hyphens and underscores.",
                            )
                        ],
                        verbose_name="code",
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text="Shown to users, e.g. NVIDIA H100 80GB.", max_length=100, verbose_name="name"
                    ),
                ),
                (
                    "memory_gib",
                    models.PositiveIntegerField(
                        validators=[django.core.validators.MinValueValidator(1)], verbose_name="memory (GiB)"
                    ),
                ),
                (
                    "gpus_per_node",
                    models.PositiveSmallIntegerField(
                        default=8,
                        help_text="A request for more GPUs than one node has cannot be placed.",
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(64),
                        ],
                        verbose_name="GPUs per node",
                    ),
                ),
                (
                    "nvml_names",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=100),
                        blank=True,
                        default=list,
                        help_text="Names NVML reports for this model, comma-separated, e.g. NVIDIA H100 80GB HBM3.",
                        size=None,
                        verbose_name="NVML product names",
                    ),
                ),
                (
                    "active",
                    models.BooleanField(
                        default=True,
                        help_text="Choosable for new call budgets and rates; what already refers to it keeps working.",
                        verbose_name="offered",
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={
                "verbose_name": "GPU model",
                "verbose_name_plural": "GPU models",
                "ordering": ["code"],
            },
        ),
        migrations.RunPython(insert_models, migrations.RunPython.noop),
    ]

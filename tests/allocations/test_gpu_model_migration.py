"""The migration that turned GPU model codes into rows, run for real on a database that holds
codes: every stored code keeps resolving, one no row knew gets a row of its own, and an
application without a model keeps none."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from allocations.models import Gpu, GpuModel, Node
from portal.models import Application, CallBudget

BEFORE = [
    ("allocations", "0012_task_list_order_index"),
    ("portal", "0008_list_order_indexes"),
    ("billing", "0003_invoices_packs_stripe_events"),
]


@pytest.mark.django_db(transaction=True)
def test_a_database_with_gpu_model_codes_migrates_and_every_reference_resolves():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    node = old.get_model("allocations", "Node").objects.create(
        hostname="gpu-l40s-01", address="192.0.2.1", gpu_model="L40S-48GB"
    )
    old.get_model("allocations", "Gpu").objects.create(
        node_id=node.pk, index=0, uuid="GPU-l40s-0", model="L40S-48GB", memory_mib=46068
    )
    now = timezone.now()
    call = old.get_model("portal", "Call").objects.create(
        title_ko="공모", title_en="Call", opens_at=now, closes_at=now + timedelta(days=9),
        eligible_kinds=["university"], cap_gpu_hours=100, copay_percent=0,
        allocation_starts_on=date(2027, 1, 1), allocation_ends_on=date(2027, 12, 31),
    )  # fmt: skip
    old.get_model("portal", "CallBudget").objects.create(call_id=call.pk, gpu_model="H100-80GB", gpu_hours=10)
    org = old.get_model("portal", "Organisation").objects.create(kind="university", name_ko="대학", name_en="Univ")
    pi = old.get_model("portal", "User").objects.create(email="pi@univ.ac.kr")
    old.get_model("portal", "Application").objects.create(
        call_id=call.pk, organisation_id=org.pk, principal_investigator_id=pi.pk, title="Draft", gpu_model=""
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    l40s = GpuModel.objects.get(pk="L40S-48GB")
    assert (l40s.name, l40s.memory_gib) == ("L40S-48GB", 48)  # an operator renames it in the admin
    assert Node.objects.select_related("gpu_model").get(hostname="gpu-l40s-01").gpu_model == l40s
    assert Gpu.objects.get(uuid="GPU-l40s-0").model_id == "L40S-48GB"
    h100 = GpuModel.objects.get(pk="H100-80GB")
    assert "NVIDIA H100 80GB HBM3" in h100.nvml_names
    assert CallBudget.objects.get().gpu_model == h100
    assert Application.objects.get(title="Draft").gpu_model_id is None
    assert set(GpuModel.objects.values_list("code", flat=True)) == {
        "A100-80GB", "H100-80GB", "H200-141GB", "B200-180GB", "L40S-48GB",
    }  # fmt: skip

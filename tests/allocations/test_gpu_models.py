"""GPU models are rows an operator adds in the admin: a new generation reaches nodes, GPUs,
calls, applications and rates without a migration, and a model in use cannot be deleted."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db.models import ProtectedError
from django.utils import timezone

from allocations.models import GpuModel, Node
from allocations.services.nodes import node_record_inventory, node_register
from billing.models import Rate
from portal.models import Application, CallBudget
from portal.services import applications as svc
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, OrganisationDomainFactory, UserFactory
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

MODELS = "/admin/allocations/gpumodel/"
OPERATOR_PERMS = (
    "allocations.add_gpumodel", "allocations.change_gpumodel", "allocations.view_gpumodel",
    "allocations.delete_gpumodel",
)  # fmt: skip


@pytest.fixture
def operator_client(client):
    client.force_login(staff_user("ops@centre.kr", *OPERATOR_PERMS))
    client.cookies["django_language"] = "en"
    return client


def add_x300(client, **changes):
    data = {
        "code": "X300-288GB", "name": "NVIDIA X300 288GB", "memory_gib": "288", "gpus_per_node": "8",
        "nvml_names": "NVIDIA  X300 288GB HBM3e", "active": "on", **changes,
    }  # fmt: skip
    return client.post(f"{MODELS}add/", data)


def inventory(*names: str) -> dict:
    return {
        "gpus": [
            {"index": i, "uuid": f"GPU-{uuid.uuid4()}", "name": name, "memory_mib": 294912}
            for i, name in enumerate(names)
        ]
    }


def test_an_operator_adds_a_gpu_generation_in_the_admin(operator_client):
    response = add_x300(operator_client)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    x300 = GpuModel.objects.get(pk="X300-288GB")
    assert (x300.name, x300.memory_gib, x300.gpus_per_node) == ("NVIDIA X300 288GB", 288, 8)
    assert x300.nvml_names == ["NVIDIA X300 288GB HBM3e"]  # whitespace collapsed
    assert "NVIDIA X300 288GB" in operator_client.get(MODELS).content.decode()


def test_a_node_reporting_the_new_nvml_name_is_registered_with_gpus_of_that_model(operator_client):
    add_x300(operator_client)
    node = node_register(
        hostname="gpu-x300-01", address="192.0.2.9", ssh_port=22, ssh_username="gpprov", gpu_model="X300-288GB"
    )
    gpus = node_record_inventory(node=node, inventory=inventory("nvidia x300 288gb hbm3e", "NVIDIA X300 288GB HBM3e"))
    node.refresh_from_db()
    assert [g.model_id for g in gpus] == ["X300-288GB", "X300-288GB"]
    assert node.status == Node.Status.ONLINE


def test_an_unknown_nvml_name_takes_the_node_offline_and_tells_the_operator_to_add_a_gpu_model(db):
    node = node_register(
        hostname="gpu-new-01", address="192.0.2.10", ssh_port=22, ssh_username="gpprov", gpu_model="H100-80GB"
    )
    gpus = node_record_inventory(node=node, inventory=inventory("NVIDIA Z9000 512GB"))
    node.refresh_from_db()
    assert gpus == []
    assert node.status == Node.Status.OFFLINE
    assert "NVIDIA Z9000 512GB" in node.status_reason
    assert "add it to a GPU model" in node.status_reason


def test_an_nvml_name_two_models_list_is_never_guessed_between(db):
    GpuModel.objects.create(code="H100-X", name="Copy", memory_gib=80, nvml_names=["NVIDIA H100 80GB HBM3"])
    node = node_register(
        hostname="gpu-twice-01", address="192.0.2.11", ssh_port=22, ssh_username="gpprov", gpu_model="H100-80GB"
    )
    assert node_record_inventory(node=node, inventory=inventory("NVIDIA H100 80GB HBM3")) == []
    node.refresh_from_db()
    assert node.status == Node.Status.OFFLINE
    assert "“NVIDIA H100 80GB HBM3” is listed by several GPU models" in node.status_reason


def test_a_call_offers_the_new_model_and_an_applicant_requests_it(operator_client, client):
    add_x300(operator_client, gpus_per_node="4")
    call = CallFactory(budgets={"X300-288GB": 5000})
    domain = OrganisationDomainFactory(domain="snu-demo.ac.kr")
    researcher = MembershipFactory(user=UserFactory(email="kim@snu-demo.ac.kr"), organisation=domain.organisation)
    client.force_login(researcher.user)
    client.cookies["django_language"] = "en"
    form = client.get(f"/calls/{call.pk}/apply/").content.decode()
    assert 'value="X300-288GB"' in form and "NVIDIA X300 288GB" in form
    data = {
        "organisation": researcher.organisation_id, "title": "X300 training", "abstract": "A.", "field": "nlp",
        "gpu_model": "X300-288GB", "gpu_count": "4", "gpu_hours": "1000",
        "starts_on": call.allocation_starts_on.isoformat(),
        "ends_on": (call.allocation_starts_on + timedelta(days=30)).isoformat(), "justification": "J.",
        "data_sensitivity": "public", "client_token": str(uuid.uuid4()), "submit": "1",
    }  # fmt: skip
    response = client.post(f"/calls/{call.pk}/apply/", data)
    app = Application.objects.get()
    assert response.status_code == 302
    assert (app.gpu_model_id, app.status) == ("X300-288GB", "submitted")
    page = client.get(f"/applications/{app.pk}/").content.decode()
    assert "4 × NVIDIA X300 288GB" in page
    assert "4 GPUs fit on one node (4 per node)" in page


def test_more_gpus_than_the_models_node_holds_are_ineligible(db):
    GpuModel.objects.create(code="X300-288GB", name="NVIDIA X300 288GB", memory_gib=288, gpus_per_node=4)
    app = ApplicationFactory(call=CallFactory(budgets={"X300-288GB": 5000}), gpu_model="X300-288GB", gpu_count=8)
    results = {r.rule: r for r in svc.application_evaluate(application=app)}
    assert results["gpu_count"].outcome == "fail"
    assert "a node has 4" in results["gpu_count"].reason


def test_the_call_admin_offers_the_new_model_for_a_budget(operator_client):
    add_x300(operator_client)
    operator_client.force_login(
        staff_user(
            "calls@ministry.go.kr",
            "portal.add_call",
            "portal.view_call",
            "portal.add_callbudget",
            "portal.view_callbudget",
        )
    )
    page = operator_client.get("/admin/portal/call/add/").content.decode()
    assert 'value="X300-288GB"' in page


def test_a_rate_published_for_the_new_model_shows_on_the_rate_card(operator_client, client):
    add_x300(operator_client)
    finance = staff_user("finance@centre.kr", "billing.add_rate", "billing.view_rate")
    operator_client.force_login(finance)
    today = timezone.localdate()
    response = operator_client.post(
        "/admin/billing/rate/add/",
        {"gpu_model": "X300-288GB", "price_tier": "academic", "krw_per_gpu_hour": "7700",
         "effective_from": today.isoformat()},
    )  # fmt: skip
    assert response.status_code == 302
    assert Rate.objects.get().gpu_model_id == "X300-288GB"
    card = client.get("/rates/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "NVIDIA X300 288GB" in card and "7,700" in card


def test_an_nvml_name_already_mapped_to_another_model_is_refused(operator_client):
    response = add_x300(operator_client, nvml_names="nvidia h100 80gb  HBM3")
    assert response.status_code == 200
    assert "already maps to H100-80GB" in response.content.decode()
    assert not GpuModel.objects.filter(pk="X300-288GB").exists()


def test_a_gpu_model_in_use_cannot_be_deleted(operator_client):
    CallFactory()  # a budget for H100-80GB
    page = operator_client.get(f"{MODELS}H100-80GB/delete/").content.decode()
    assert "would require deleting the following protected related objects" in page
    operator_client.post(f"{MODELS}H100-80GB/delete/", {"post": "yes"})
    assert GpuModel.objects.filter(pk="H100-80GB").exists()
    with pytest.raises(ProtectedError):
        GpuModel.objects.get(pk="H100-80GB").delete()


def test_a_gpu_model_nothing_refers_to_is_deleted(operator_client):
    assert not CallBudget.objects.filter(gpu_model="B200-180GB").exists()
    operator_client.post(f"{MODELS}B200-180GB/delete/", {"post": "yes"})
    assert not GpuModel.objects.filter(pk="B200-180GB").exists()


def test_a_code_cannot_be_changed_once_the_model_exists(operator_client):
    page = operator_client.get(f"{MODELS}H100-80GB/change/").content.decode()
    assert "NVIDIA H100 80GB" in page and 'name="code"' not in page


def test_a_retired_model_is_no_longer_offered_for_new_budgets_or_rates(operator_client):
    GpuModel.objects.filter(pk="B200-180GB").update(active=False)
    operator_client.force_login(
        staff_user(
            "calls@ministry.go.kr", "portal.add_call", "portal.view_call", "portal.add_callbudget",
            "portal.view_callbudget", "billing.add_rate", "billing.view_rate",
        )
    )  # fmt: skip
    for page in ("/admin/portal/call/add/", "/admin/billing/rate/add/"):
        body = operator_client.get(page).content.decode()
        assert 'value="H100-80GB"' in body and 'value="B200-180GB"' not in body, page

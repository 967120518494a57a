"""The grant page's "Preparing your access" list after the node ran the grant's steps a second
time (`make clean-demo` then `make run`, or a reinstalled node): each step once, as its latest
run, not the old finished tasks beside the new ones."""

from __future__ import annotations

from collections import Counter

from django.urls import reverse
from django.utils import timezone

from allocations.jobs import node_tasks_job
from allocations.models import NodeAccount, ProvisioningTask
from allocations.services import grants as grant_services
from allocations.services.provisioning import grant_steps
from tests.allocations.helpers import approved_grant, provision, user_with_key, wipe_node


def steps_listed(client, grant) -> list[str]:
    client.force_login(grant.application.principal_investigator)
    body = client.get(reverse("allocations:grant_detail", args=[grant.pk]), HTTP_ACCEPT_LANGUAGE="en").content
    html = body.decode()
    listed = html.split('<ol class="steps">', 1)[1].split("</ol>", 1)[0]
    return [item.split(">", 1)[1] for item in listed.split("</li>") if "<li" in item]


def test_a_node_provisioned_again_lists_each_step_of_the_grant_once_with_its_latest_state(
    client, gpu_node, tmp_path, node_host
):
    app, _key = user_with_key(tmp_path)
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    first = steps_listed(client, grant)
    account = NodeAccount.objects.get(user=grant.application.principal_investigator)

    wipe_node(node_host, grant, account.username)
    assert grant_services.reconcile_node(node=gpu_node)  # the same steps queued again
    node_tasks_job(gpu_node.pk)
    runs = Counter(grant.tasks.values_list("kind", flat=True))
    assert runs[ProvisioningTask.Kind.ENSURE_ACCOUNT] == 2  # both runs are kept for the operators

    again = steps_listed(client, grant)
    assert again == first  # the same steps, once each
    assert all(line.endswith("· Succeeded") for line in again)
    assert len(grant_steps(grant=grant)) == len(first)
    assert (
        f"{len(first)} of {len(first)} steps done."
        in client.get(reverse("allocations:grant_detail", args=[grant.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    )


def steps_summary(client, grant) -> str:
    client.force_login(grant.application.principal_investigator)
    html = client.get(reverse("allocations:grant_detail", args=[grant.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    return html.split("<h2>Preparing your access</h2>", 1)[1].split("<ol", 1)[0]


def test_a_resumed_grant_lists_only_the_steps_of_its_resumption_not_those_of_its_suspension(client, gpu_node, tmp_path):
    app, _key = user_with_key(tmp_path)
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    first = steps_listed(client, grant)
    grant_services.grant_suspend(grant=grant, actor=None, reason="audit")
    node_tasks_job(gpu_node.pk)

    grant_services.grant_resume(grant=grant, actor=None)

    # While the resumption runs, nothing of it is done yet; the suspension's steps do not count.
    waiting = steps_listed(client, grant)
    assert not any(line.startswith("Revoke access") for line in waiting), waiting
    assert [line.split(" · ")[0] for line in waiting] == [line.split(" · ")[0] for line in first]
    assert f"0 of {len(first)} steps done." in steps_summary(client, grant)

    node_tasks_job(gpu_node.pk)
    grant.refresh_from_db()
    assert grant.status == grant.Status.ACTIVE, grant.status_reason
    again = steps_listed(client, grant)
    assert again == first  # the same steps as the first provisioning, each once, all succeeded
    assert f"{len(first)} of {len(first)} steps done." in steps_summary(client, grant)

"""Attack review of issue 8 (attack8): Redis really stopped during the account flows the brief
names (password reset, sign-in, invitation). The cache (allauth's rate limits) lives in Redis."""

from __future__ import annotations

import pytest
from django.conf import settings as dj_settings
from django.test import Client

from portal.models import Membership, OutboxMessage
from tests.factories import MembershipFactory, UserFactory
from tests.portal.test_outbox import redis  # noqa: F401  (the private, really stoppable Redis)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flow", ["password_reset", "login", "invitation"])
def test_account_flows_do_not_500_while_redis_is_down(redis, flow):  # noqa: F811
    user = UserFactory(email="alice@example.ac.kr")
    owner = MembershipFactory(role=Membership.Role.OWNER).user
    redis.stop()
    client = Client(raise_request_exception=False)
    if flow == "password_reset":
        response = client.post("/accounts/password/reset/", {"email": user.email})
    elif flow == "login":
        response = client.post("/accounts/login/", {"login": user.email, "password": dj_settings.DEMO_PASSWORD})
    else:
        client.force_login(owner)
        org = Membership.objects.get(user=owner).organisation
        response = client.post(
            f"/organisations/{org.pk}/invitations/", {"email": "bob@example.ac.kr", "role": "member"}
        )
    assert response.status_code in (200, 302), response.status_code
    if flow != "login":
        assert OutboxMessage.objects.filter(sent_at=None).count() == 1  # kept for the drain

"""The hour-pack form offers only the GPU models that have a rate in force today for the
organisation's price tier (a pack of any other model cannot be priced, so the purchase would
fail); with none, the page says so instead of showing a form that cannot succeed."""

from __future__ import annotations

import re
from datetime import date, timedelta

from django.utils import timezone

from billing.models import HourPack
from tests.billing.helpers import rate_card, startup


def offered(page: str) -> list[str]:
    select = re.search(r'<select name="gpu_model".*?</select>', page, re.S)
    return re.findall(r'<option value="([^"]+)"', select.group(0)) if select else []


def test_the_form_offers_only_gpu_models_with_a_rate_in_force_for_the_organisations_tier(client, db):
    rate_card("startup", 3000, model="H100-80GB")
    rate_card("startup", 2000, model="A100-80GB", since=timezone.localdate() + timedelta(days=3))  # not yet
    rate_card("enterprise", 5000, model="H200-141GB")  # another tier's
    rate_card("startup", 7000, model="B200-180GB", since=date(2026, 1, 1))
    org, owner = startup()
    client.force_login(owner)
    page = client.get(f"/billing/hour-packs/?organisation={org.pk}").content.decode()
    assert offered(page) == ["B200-180GB", "H100-80GB"]


def test_a_model_without_a_rate_posted_anyway_is_refused_by_the_form_without_reaching_stripe(client, db, recorder):
    rate_card("startup", 3000, model="H100-80GB")
    org, owner = startup()
    client.force_login(owner)
    response = client.post(f"/billing/hour-packs/?organisation={org.pk}", {"gpu_model": "A100-80GB", "gpu_hours": "12"})
    assert response.status_code == 200 and 'value="12"' in response.content.decode()
    assert recorder.requests == [] and not HourPack.objects.exists()


def test_with_no_rate_in_force_the_page_says_so_in_both_languages_instead_of_a_form(client, db, recorder):
    rate_card("enterprise", 5000, model="H100-80GB")  # only another tier is priced
    org, owner = startup()
    client.force_login(owner)
    url = f"/billing/hour-packs/?organisation={org.pk}"
    english = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No GPU-hours can be bought" in english and "Continue to payment" not in english
    assert offered(english) == [] and 'name="gpu_hours"' not in english
    korean = client.get(url, HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "구매할 수 있는 GPU 시간이 없습니다" in korean and 'name="gpu_hours"' not in korean
    posted = client.post(url, {"gpu_model": "H100-80GB", "gpu_hours": "10"}, HTTP_ACCEPT_LANGUAGE="en")
    assert "No GPU-hours can be bought" in posted.content.decode()
    assert recorder.requests == [] and not HourPack.objects.exists()

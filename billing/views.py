from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from allocations.models import GpuModel
from billing.models import Rate
from portal.models import Organisation


def rate_card(request: HttpRequest) -> HttpResponse:
    """The published rate card: today's KRW per GPU-hour by GPU model and price tier, and
    changes already scheduled."""
    current = {(r.gpu_model, r.price_tier): r for r in Rate.objects.in_effect()}
    tiers = Organisation.PriceTier.choices
    rows = [
        (label, [current.get((value, tier)) for tier, _label in tiers])
        for value, label in GpuModel.choices
        if any((value, tier) in current for tier, _l in tiers)
    ]
    return render(
        request,
        "billing/rates.html",
        {"tiers": tiers, "rows": rows, "scheduled": Rate.objects.scheduled()},
    )

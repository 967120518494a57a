"""Cost before commitment on other apps' pages, without those apps importing billing services:
`{% cost_preview form call %}` on the application form, `{% request_cost application %}` and
`{% award_cost form application %}` on the review and decide pages, `{% grant_costs grant %}` on
the grant page and dashboard."""

from __future__ import annotations

import json

from django import template
from django.conf import settings

from billing.models import Rate
from billing.services.estimates import grant_month, request_estimate

register = template.Library()


def _hours(value) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _preview(organisations: list, chosen, gpu_model, gpu_hours: int, copay_percent: int) -> dict:
    """The estimate for the values shown now (server-rendered: the fallback without JavaScript),
    and each organisation's rates for static/js/cost-preview.js to recompute as one types."""
    rates = {
        str(org.pk): {
            r.gpu_model_id: r.krw_per_gpu_hour for r in Rate.objects.in_effect().filter(price_tier=org.price_tier)
        }
        for org in organisations
    }
    result = None
    if chosen is not None and gpu_hours > 0 and gpu_model:
        result = request_estimate(
            gpu_model=gpu_model, tier=chosen.price_tier, gpu_hours=gpu_hours, copay_percent=copay_percent
        )
    return {
        "estimate": result,
        "copay_percent": copay_percent,
        "vat_percent": settings.VAT_PERCENT,
        "rates_json": json.dumps(rates),
    }


@register.inclusion_tag("billing/_cost_preview.html")
def cost_preview(form, call) -> dict:
    organisations = list(form.fields["organisation"].queryset)
    wanted = form["organisation"].value() or (organisations[0].pk if len(organisations) == 1 else None)
    chosen = next((o for o in organisations if str(o.pk) == str(wanted)), None)
    return _preview(
        organisations, chosen, form["gpu_model"].value(), _hours(form["gpu_hours"].value()), call.copay_percent
    )


@register.inclusion_tag("billing/_cost_preview.html")
def award_cost(form, application) -> dict:
    """The award as the approver edits it (falls back to the request while the fields are empty)."""
    model = form["gpu_model"].value() or application.gpu_model_id
    hours = _hours(form["gpu_hours"].value()) or _hours(application.gpu_hours)
    org = application.organisation
    return _preview([org], org, model, hours, application.call.copay_percent)


@register.inclusion_tag("billing/_request_cost.html")
def request_cost(application) -> dict:
    result = None
    if application.gpu_model_id and application.gpu_hours:
        result = request_estimate(
            gpu_model=application.gpu_model_id,
            tier=application.organisation.price_tier,
            gpu_hours=application.gpu_hours,
            copay_percent=application.call.copay_percent,
        )
    return {"estimate": result, "copay_percent": application.call.copay_percent}


@register.inclusion_tag("billing/_grant_costs.html")
def grant_costs(grant) -> dict:
    return {"grant": grant, "month": grant_month(grant)}

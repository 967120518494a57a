from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.models import Membership, Organisation
from portal.validators import (
    normalise_business_registration_number,
    normalise_domain,
    validate_business_registration_number,
    validate_domain,
)

MAX_DOMAINS = 10


class OrganisationForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=Organisation.Kind.choices)
    name_ko = forms.CharField(label=_("Name (Korean)"), max_length=200)
    name_en = forms.CharField(label=_("Name (English)"), max_length=200)
    domains = forms.CharField(
        label=_("E-mail domains"),
        required=False,
        max_length=2000,
        help_text=_(
            "One or more, separated by commas or spaces (e.g. example.ac.kr). Members of a university or "
            "research institute with a verified address on a verified domain join automatically."
        ),
    )
    business_registration_number = forms.CharField(
        label=_("Business registration number"),
        required=False,
        max_length=20,
        help_text=_("Required for startups, SMEs and enterprises: 10 digits, like 123-45-67890."),
    )
    founded_on = forms.DateField(
        label=_("Founded on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Required for startups."),
    )

    def clean_domains(self) -> list[str]:
        raw = self.cleaned_data.get("domains", "")
        domains = [normalise_domain(d) for d in raw.replace(",", " ").split()]
        domains = list(dict.fromkeys(d for d in domains if d))
        if len(domains) > MAX_DOMAINS:
            raise ValidationError(_("At most %(n)d domains.") % {"n": MAX_DOMAINS})
        errors = []
        for d in domains:
            try:
                validate_domain(d)
            except ValidationError as exc:
                errors.extend(exc.error_list)
        if errors:
            raise ValidationError(errors)
        return domains

    def clean_business_registration_number(self) -> str:
        value = normalise_business_registration_number(self.cleaned_data.get("business_registration_number", ""))
        if value:
            validate_business_registration_number(value)
            if Organisation.objects.filter(business_registration_number=value).exists():
                raise ValidationError(
                    _("An organisation with this business registration number is already registered.")
                )
        return value

    def clean_founded_on(self):
        value = self.cleaned_data.get("founded_on")
        if value and value > timezone.localdate():
            raise ValidationError(_("The founding date cannot be in the future."))
        return value

    def clean(self) -> dict:
        data = super().clean()
        kind = data.get("kind")
        if kind in Organisation.COMPANY_KINDS and not data.get("business_registration_number"):
            if "business_registration_number" not in self.errors:
                self.add_error(
                    "business_registration_number", _("Companies must give their business registration number.")
                )
        if kind == Organisation.Kind.STARTUP and not data.get("founded_on") and "founded_on" not in self.errors:
            self.add_error("founded_on", _("Startups must give their founding date."))
        if kind in Organisation.ACADEMIC_KINDS and not data.get("domains") and "domains" not in self.errors:
            self.add_error("domains", _("Universities and research institutes must give at least one e-mail domain."))
        return data


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("E-mail address"), max_length=254)
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices)

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models import GpuModel
from portal.models import Application, Call, Membership, Organisation
from portal.services.applications import DRAFT_FIELDS
from portal.services.domains import is_public_email_domain
from portal.validators import (
    normalise_business_registration_number,
    normalise_domain,
    validate_business_registration_number,
    validate_domain,
    validate_no_link,
)
from portal.widgets import AttachmentInput

MAX_DOMAINS = 10


class OrganisationForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=Organisation.Kind.choices)
    name_ko = forms.CharField(label=_("Name (Korean)"), max_length=200, validators=[validate_no_link])
    name_en = forms.CharField(label=_("Name (English)"), max_length=200, validators=[validate_no_link])
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
            else:
                if is_public_email_domain(d):
                    errors.append(
                        ValidationError(
                            _("%(domain)s is a public e-mail service and cannot belong to an organisation.")
                            % {"domain": d}
                        )
                    )
        if errors:
            raise ValidationError(errors)
        return domains

    def clean_business_registration_number(self) -> str:
        value = normalise_business_registration_number(self.cleaned_data.get("business_registration_number", ""))
        if value:
            validate_business_registration_number(value)
            if Organisation.objects.filter(business_registration_number=value, brn_status="verified").exists():
                raise ValidationError(
                    _(
                        "An organisation with this business registration number is already registered and confirmed. "
                        "If the number is yours, contact the centre with your registration certificate."
                    )
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


MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


class ApplicationForm(forms.ModelForm):
    """The application in sections. Every field may stay empty in a draft; submission checks
    completeness. Types, ranges and the call's GPU models are checked at every save."""

    SECTIONS = [
        (_("Project"), ["organisation", "title", "abstract", "field"]),
        (_("Team"), ["team"]),
        (_("Resources"), ["gpu_model", "gpu_count", "gpu_hours"]),
        (_("Schedule"), ["starts_on", "ends_on"]),
        (_("Justification"), ["justification", "software"]),
        (_("Data"), ["data_sensitivity", "attachment"]),
    ]

    organisation = forms.ModelChoiceField(label=_("Organisation"), queryset=Organisation.objects.none())
    team = forms.ModelMultipleChoiceField(
        label=_("Team members"),
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Members of the organisation who will work on the project; they can see the application."),
    )
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    client_token = forms.UUIDField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Application
        fields = [*DRAFT_FIELDS, "attachment"]
        widgets = {
            "starts_on": forms.DateInput(attrs={"type": "date"}),
            "ends_on": forms.DateInput(attrs={"type": "date"}),
            "abstract": forms.Textarea(attrs={"rows": 6}),
            "justification": forms.Textarea(attrs={"rows": 6}),
            "software": forms.Textarea(attrs={"rows": 3}),
            "attachment": AttachmentInput(attrs={"accept": "application/pdf"}),
        }

    def __init__(self, *args, call: Call, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.call = call
        from portal.models import User

        organisations = Organisation.objects.visible_to(user)
        self.fields["organisation"].queryset = organisations
        if not self.instance.pk and len(organisations) == 1:
            self.fields["organisation"].initial = organisations[0]
        self.fields["team"].queryset = (
            User.objects.filter(memberships__organisation__in=organisations).exclude(pk=user.pk).distinct()
        )
        self.fields["team"].label_from_instance = lambda u: u.email
        self.fields["gpu_model"].queryset = GpuModel.objects.filter(pk__in=call.budgets.values("gpu_model"))
        for name, message in (
            ("gpu_count", _("Request at least one GPU.")),
            ("gpu_hours", _("Request at least one GPU-hour.")),
        ):
            field = self.fields[name]
            field.validators = [v for v in field.validators if not isinstance(v, MinValueValidator)]
            field.validators.append(MinValueValidator(1, message=message))
            field.widget.attrs["min"] = 1
        if self.instance.pk:
            self.fields["organisation"].initial = self.instance.organisation
            self.fields["organisation"].disabled = True
            self.fields["version"].initial = self.instance.version
            self.fields["team"].initial = list(self.instance.team.all())
            if self.instance.attachment:
                self.fields["attachment"].widget.current_name = self.instance.attachment_name or _("PDF")

    def sections(self):
        return [(title, [self[name] for name in names]) for title, names in self.SECTIONS]

    def clean_attachment(self):
        upload = self.cleaned_data.get("attachment")
        if upload and hasattr(upload, "content_type"):  # a new upload, not the stored file
            if upload.size > MAX_ATTACHMENT_BYTES:
                raise ValidationError(_("The attachment is larger than 10 MB."))
            head = upload.read(5)
            upload.seek(0)
            if head != b"%PDF-" or not upload.name.lower().endswith(".pdf"):
                raise ValidationError(_("The attachment must be a PDF file."))
        return upload

    def clean(self):
        data = super().clean()
        starts, ends = data.get("starts_on"), data.get("ends_on")
        if starts and ends and ends <= starts:
            self.add_error("ends_on", _("The end must be after the start."))
        org = data.get("organisation") or (self.instance.organisation if self.instance.pk else None)
        team = data.get("team")
        if org and team:
            outsiders = [u.email for u in team if not org.memberships.filter(user=u).exists()]
            if outsiders:
                self.add_error(
                    "team",
                    _("Team members must belong to the organisation: %(emails)s.") % {"emails": ", ".join(outsiders)},
                )
        return data

    def draft_data(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k in DRAFT_FIELDS}


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000
    )


class PrincipalInvestigatorForm(forms.Form):
    """An owner passes the principal investigator's role to another current member."""

    principal_investigator = forms.ModelChoiceField(label=_("New principal investigator"), queryset=None)

    def __init__(self, *args, application: Application, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from portal.models import User

        field = self.fields["principal_investigator"]
        field.queryset = User.objects.filter(memberships__organisation=application.organisation).exclude(
            pk=application.principal_investigator_id
        )
        field.label_from_instance = lambda u: u.email


class BusinessRegistrationDocumentForm(forms.Form):
    document = forms.FileField(
        label=_("Business registration certificate (PDF)"),
        help_text=_("The centre checks it and then confirms your number."),
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf"}),
    )

    def clean_document(self):
        upload = self.cleaned_data["document"]
        if upload.size > MAX_ATTACHMENT_BYTES:
            raise ValidationError(_("The attachment is larger than 10 MB."))
        head = upload.read(5)
        upload.seek(0)
        if head != b"%PDF-" or not upload.name.lower().endswith(".pdf"):
            raise ValidationError(_("The attachment must be a PDF file."))
        return upload

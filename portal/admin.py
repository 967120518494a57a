from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from allocations.admin_gpu_models import OfferedGpuModelsMixin
from portal import services
from portal.admin_numbers import grouped_field
from portal.admin_scale import ScaledAdmin, choice_display, local_time, readonly_table
from portal.models import (
    Call,
    CallBudget,
    InstitutionalDomain,
    Invitation,
    Membership,
    Organisation,
    OrganisationAuditLog,
    OrganisationDomain,
    User,
    audit,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    show_full_result_count = False
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("first_name", "last_name")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    readonly_fields = ["last_login", "date_joined"]


class DomainAdminForm(forms.ModelForm):
    """A domain typed in the admin is stored as users' addresses are matched: lower case, no
    "@" or trailing dot, a real domain, never a public webmail one."""

    def clean_domain(self) -> str:
        from portal.services.domains import is_public_email_domain
        from portal.validators import normalise_domain, validate_domain

        domain = normalise_domain(self.cleaned_data.get("domain", ""))
        validate_domain(domain)
        if is_public_email_domain(domain):
            raise forms.ValidationError(
                _("%(domains)s is a public e-mail service and cannot belong to an organisation.") % {"domains": domain}
            )
        return domain


def _audit_domain_added(request: HttpRequest, domain: OrganisationDomain) -> None:
    audit(organisation=domain.organisation, action=OrganisationAuditLog.Action.DOMAIN_ADDED, actor=request.user,
          new=domain.domain, reason="added in the admin")  # fmt: skip


class OrganisationDomainInline(admin.TabularInline):
    """Operators may add a domain (unverified, audited); verifying is the separate action."""

    model = OrganisationDomain
    extra = 0
    readonly_fields = ["verified", "created_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


LATEST_ROWS = 50  # members and audit rows shown on an organisation's page (all of them in their lists)


@admin.register(Membership)
class MembershipAdmin(ScaledAdmin):
    """Every membership, to list an organisation's members (linked from its page, filtered by
    organisation). Read-only: roles and removals go through the portal's services (audit rows,
    node access), never a plain edit here."""

    list_display = ["user", "organisation", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "organisation"]
    search_fields = ["user__email", "organisation__name_en", "organisation__name_ko"]
    ordering = ["-pk"]  # newest first, from the primary key's index (no sort of the whole table)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


AUDIT_TITLE = _("audit log (the latest 50 rows; all of them in the audit log)")
AUDIT_FIELDS = ("action", "actor", "user", "old_value", "new_value", "reason")  # after the time


class MoveNumberForm(forms.Form):
    target = forms.ModelChoiceField(
        label=_("Move the number to"), queryset=Organisation.objects.filter(kind__in=Organisation.COMPANY_KINDS)
    )
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


BRN_FIELDS = frozenset({"business_registration_number", "brn_status", "certificate"})


@admin.register(Organisation)
class OrganisationAdmin(ScaledAdmin):
    list_display = [
        "name_en", "name_ko", "kind", "business_registration_number", "brn_status", "founded_on", "created_at",
    ]  # fmt: skip
    list_filter = ["kind", "brn_status"]
    search_fields = ["name_en", "name_ko", "business_registration_number", "domains__domain"]
    # Members and audit rows are read-only tables (`members`, `audit_log`), not inlines: 50 forms
    # of each were three quarters of the largest organisation's page CPU (issue 13).
    inlines = [OrganisationDomainInline]
    readonly_fields = ["created_at", "created_by", "business_registration_number", "brn_status", "certificate"]
    exclude = ["brn_document"]
    actions = ["confirm_business_numbers", "move_business_number"]
    # Each table with the model whose view permission it needs (the permission of its own list).
    row_tables = {"members": Membership, "audit_log": OrganisationAuditLog}

    def _tables(self, request: HttpRequest) -> list[str]:
        """The tables this user may see: the members to whoever may view memberships, the audit
        rows to whoever may view the audit log, as the inlines they replace were shown."""
        site = self.admin_site
        return [
            name for name, model in self.row_tables.items() if site.get_model_admin(model).has_view_permission(request)
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, *self._tables(request)]

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        """A university or institute without a business registration number shows no number,
        number status or certificate (there is nothing to confirm)."""
        fields = list(super().get_fields(request, obj))
        if obj is not None and not obj.business_registration_number and obj.kind not in Organisation.COMPANY_KINDS:
            fields = [f for f in fields if f not in BRN_FIELDS]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:
        """The organisation's fields, then a section per table the user may see."""
        if obj is None:
            return super().get_fieldsets(request, obj)
        tables = self._tables(request)
        fields = [f for f in self.get_fields(request, obj) if f not in self.row_tables]
        titles = {"members": _("members (the latest 50)"), "audit_log": AUDIT_TITLE}
        return [(None, {"fields": fields}), *((titles[name], {"fields": [name]}) for name in tables)]

    def _list_link(self, model, obj: Organisation, text) -> str:
        """A link to the admin list of `model` filtered by this organisation."""
        url = reverse(f"admin:portal_{model._meta.model_name}_changelist", current_app=self.admin_site.name)
        return format_html('<p><a href="{}?organisation__id__exact={}">{}</a></p>', url, obj.pk, text)

    @admin.display(description=_("members (the latest 50)"))
    def members(self, obj: Organisation) -> str:
        """The latest members, newest first; the link lists all of them (the membership list)."""
        rows = (
            Membership.objects.filter(organisation=obj)
            .select_related("user")
            .only("role", "created_at", "user__email")
            .order_by("-pk")[:LATEST_ROWS]
        )
        role = choice_display(Membership, "role")
        headers = [_("user"), Membership._meta.get_field("role").verbose_name, _("joined")]
        table = readonly_table(headers, ((m.user.email, role(m.role), local_time(m.created_at)) for m in rows))
        return format_html("{}{}", table, self._list_link(Membership, obj, _("All members of this organisation")))

    @admin.display(description=AUDIT_TITLE)
    def audit_log(self, obj: Organisation) -> str:
        """The latest audit rows, newest first; the link lists all of them (the audit log)."""
        rows = (
            OrganisationAuditLog.objects.filter(organisation=obj)
            .select_related("actor", "user")
            .only(*AUDIT_FIELDS, "created_at", "actor__email", "user__email")
            .order_by("-created_at", "-pk")[:LATEST_ROWS]
        )
        action = choice_display(OrganisationAuditLog, "action")
        empty = self.get_empty_value_display()  # as the admin shows an empty value

        def cells(row: OrganisationAuditLog) -> tuple:
            people = [person.email if person else empty for person in (row.actor, row.user)]
            texts = [text or empty for text in (row.old_value, row.new_value, row.reason)]
            return (local_time(row.created_at), action(row.action), *people, *texts)

        headers = [OrganisationAuditLog._meta.get_field(f).verbose_name for f in ("created_at", *AUDIT_FIELDS)]
        link = self._list_link(OrganisationAuditLog, obj, _("All audit rows of this organisation"))
        return format_html("{}{}", readonly_table(headers, map(cells, rows)), link)

    @admin.display(description=_("business registration certificate (PDF)"))
    def certificate(self, obj: Organisation) -> str:
        if not obj.brn_document:
            return "–"
        url = reverse("admin:portal_organisation_certificate", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Download"))

    def get_urls(self):
        view = self.admin_site.admin_view(self.certificate_view)
        return [path("<int:pk>/certificate/", view, name="portal_organisation_certificate"), *super().get_urls()]

    def certificate_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """Uploaded certificates are never public media: staff who may view organisations get them."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        org = get_object_or_404(Organisation, pk=pk)
        if not org.brn_document:
            raise Http404
        return FileResponse(org.brn_document.open("rb"), as_attachment=True, filename=f"brn-{org.pk}.pdf")

    def save_formset(self, request, form, formset, change) -> None:
        instances = formset.save()
        for obj in instances:
            if isinstance(obj, OrganisationDomain):
                _audit_domain_added(request, obj)

    @admin.action(description=_("Confirm the business registration numbers of the selected organisations"),
                  permissions=["change"])  # fmt: skip
    def confirm_business_numbers(self, request: HttpRequest, queryset: QuerySet[Organisation]) -> None:
        for org in queryset.exclude(brn_status=Organisation.BrnStatus.VERIFIED):
            try:
                services.organisation_brn_confirm(organisation=org, actor=request.user)
            except services.PortalError as exc:
                self.message_user(request, f"{org}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("%(org)s: number confirmed.") % {"org": org})

    @admin.action(description=_("Move the business registration number to another organisation"),
                  permissions=["change"])  # fmt: skip
    def move_business_number(self, request: HttpRequest, queryset: QuerySet[Organisation]):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one organisation."), messages.ERROR)
            return None
        source = queryset.get()
        form = MoveNumberForm(request.POST if "apply" in request.POST else None)
        form.fields["target"].queryset = form.fields["target"].queryset.exclude(pk=source.pk)
        if form.is_valid():
            try:
                services.organisation_brn_move(
                    source=source, target=form.cleaned_data["target"], actor=request.user,
                    reason=form.cleaned_data["reason"],
                )  # fmt: skip
            except services.PortalError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, _("The number was moved."))
                return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "source": source,
            "form": form,
            "title": _("Move the business registration number"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/portal/organisation/move_number.html", context)


@admin.register(OrganisationDomain)
class OrganisationDomainAdmin(ScaledAdmin):
    form = DomainAdminForm
    list_display = ["domain", "organisation", "verified", "created_at"]
    list_select_related = ["organisation"]
    list_filter = ["verified"]
    search_fields = ["domain", "organisation__name_en", "organisation__name_ko"]
    readonly_fields = ["verified", "created_at"]
    actions = ["verify_domains"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            _audit_domain_added(request, obj)

    @admin.action(description=_("Verify the selected domains"), permissions=["change"])
    def verify_domains(self, request: HttpRequest, queryset: QuerySet[OrganisationDomain]) -> None:
        for domain in queryset.filter(verified=False):
            try:
                services.organisation_domain_verify(domain=domain, actor=request.user)
            except services.PortalError as exc:
                self.message_user(request, f"{domain.domain}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("%(domain)s verified.") % {"domain": domain.domain})


@admin.register(InstitutionalDomain)
class InstitutionalDomainAdmin(ScaledAdmin):
    """Domains known to belong to universities and institutes. Linked to an organisation here
    (only here), a claim of the domain by that organisation from someone with a verified address
    on it is verified at once."""

    form = DomainAdminForm
    list_display = ["domain", "institution", "organisation", "created_at"]
    search_fields = ["domain", "institution"]
    raw_id_fields = ["organisation"]
    readonly_fields = ["created_at"]

    def save_model(self, request, obj, form, change) -> None:
        """Linking the domain to an organisation that has claimed it is the operator's act of
        verifying it there (audit row, waiting members join)."""
        super().save_model(request, obj, form, change)
        if obj.organisation_id is None:
            return
        claim = OrganisationDomain.objects.filter(organisation=obj.organisation_id, domain=obj.domain, verified=False)
        for domain in claim:
            try:
                services.organisation_domain_verify(domain=domain, actor=request.user)
            except services.PortalError as exc:
                self.message_user(request, f"{domain.domain}: {exc.message}", messages.ERROR)


@admin.register(OrganisationAuditLog)
class OrganisationAuditLogAdmin(ScaledAdmin):
    list_display = ["created_at", "organisation", "action", "actor", "user", "old_value", "new_value"]
    # A date filter, not a date hierarchy: the hierarchy costs two aggregates over the whole log.
    list_filter = ["action", "created_at"]
    list_select_related = ["organisation", "actor", "user"]
    search_fields = ["organisation__name_en", "organisation__name_ko", "user__email", "actor__email"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(ScaledAdmin):
    list_display = ["email", "organisation", "role", "created_at", "accepted_at"]
    list_select_related = ["organisation"]
    search_fields = ["email", "organisation__name_en", "organisation__name_ko"]
    readonly_fields = ["created_at", "accepted_at", "accepted_by", "invited_by"]


class CallBudgetInline(OfferedGpuModelsMixin, admin.TabularInline):
    model = CallBudget
    extra = 1


@admin.register(Call)
class CallAdmin(ScaledAdmin):
    list_display = ["title_en", "opens_at", "closes_at", "cap_gpu_hours_shown", "copay_percent", "past_subsidy"]
    list_filter = ["past_subsidy"]
    cap_gpu_hours_shown = grouped_field(Call, "cap_gpu_hours")
    search_fields = ["title_en", "title_ko"]
    inlines = [CallBudgetInline]


from portal import admin_outbox, admin_review  # noqa: E402, F401  (register the review queue and the outbox)

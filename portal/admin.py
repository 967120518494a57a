from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from portal import services
from portal.models import Call, CallBudget, Invitation, Membership, Organisation, OrganisationDomain, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
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


class OrganisationDomainInline(admin.TabularInline):
    model = OrganisationDomain
    extra = 0
    readonly_fields = ["verified", "created_at"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name_en", "name_ko", "kind", "business_registration_number", "founded_on", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name_en", "name_ko", "business_registration_number", "domains__domain"]
    inlines = [OrganisationDomainInline, MembershipInline]
    readonly_fields = ["created_at", "created_by"]


@admin.register(OrganisationDomain)
class OrganisationDomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "organisation", "verified", "created_at"]
    list_filter = ["verified"]
    search_fields = ["domain", "organisation__name_en", "organisation__name_ko"]
    readonly_fields = ["verified"]
    actions = ["verify_domains"]

    @admin.action(description=_("Verify the selected domains"), permissions=["change"])
    def verify_domains(self, request: HttpRequest, queryset: QuerySet[OrganisationDomain]) -> None:
        for domain in queryset.filter(verified=False):
            try:
                services.organisation_domain_verify(domain=domain)
            except services.PortalError as exc:
                self.message_user(request, f"{domain.domain}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("%(domain)s verified.") % {"domain": domain.domain})


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organisation", "role", "created_at", "accepted_at"]
    search_fields = ["email", "organisation__name_en", "organisation__name_ko"]
    readonly_fields = ["created_at", "accepted_at", "accepted_by", "invited_by"]


class CallBudgetInline(admin.TabularInline):
    model = CallBudget
    extra = 1


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ["title_en", "opens_at", "closes_at", "cap_gpu_hours", "copay_percent"]
    search_fields = ["title_en", "title_ko"]
    inlines = [CallBudgetInline]


from portal import admin_outbox, admin_review  # noqa: E402, F401  (register the review queue and the outbox)

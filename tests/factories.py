from __future__ import annotations

from datetime import timedelta

import factory
from allauth.account.models import EmailAddress
from django.conf import settings
from django.utils import timezone

from portal.models import (
    Application,
    Call,
    CallBudget,
    Invitation,
    Membership,
    Organisation,
    OrganisationDomain,
    User,
)


class UserFactory(factory.django.DjangoModelFactory):
    """A user with one verified primary address (pass verified=False for an unverified one)."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.ac.kr")
    password = factory.PostGenerationMethodCall("set_password", settings.DEMO_PASSWORD)

    @factory.post_generation
    def verified(obj, create, extracted, **kwargs):
        if create:
            EmailAddress.objects.create(user=obj, email=obj.email, primary=True, verified=extracted is not False)
            obj.save()


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    kind = Organisation.Kind.UNIVERSITY
    name_ko = factory.Sequence(lambda n: f"테스트대학교{n}")
    name_en = factory.Sequence(lambda n: f"Test University {n}")


class OrganisationDomainFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrganisationDomain

    organisation = factory.SubFactory(OrganisationFactory)
    domain = factory.Sequence(lambda n: f"univ{n}.ac.kr")
    verified = True


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = Membership.Role.MEMBER


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    organisation = factory.SubFactory(OrganisationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.ac.kr")
    role = Membership.Role.MEMBER


class CallFactory(factory.django.DjangoModelFactory):
    """An open academic call with an H100 budget of 100,000 GPU-hours."""

    class Meta:
        model = Call
        skip_postgeneration_save = True

    title_ko = factory.Sequence(lambda n: f"공모 {n}")
    title_en = factory.Sequence(lambda n: f"Call {n}")
    opens_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    closes_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
    eligible_kinds = factory.LazyFunction(lambda: ["university", "research_institute"])
    cap_gpu_hours = 20000
    copay_percent = 0
    allocation_starts_on = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=10))
    allocation_ends_on = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=375))

    @factory.post_generation
    def budgets(obj, create, extracted, **kwargs):
        if create:
            for model, hours in (extracted or {"H100-80GB": 100000}).items():
                CallBudget.objects.create(call=obj, gpu_model=model, gpu_hours=hours)


class ApplicationFactory(factory.django.DjangoModelFactory):
    """A complete, eligible draft: the PI has a verified address on the university's domain."""

    class Meta:
        model = Application
        skip_postgeneration_save = True

    call = factory.SubFactory(CallFactory)
    organisation = factory.LazyAttribute(lambda o: OrganisationDomainFactory().organisation)
    principal_investigator = factory.LazyAttributeSequence(
        lambda o, n: (
            MembershipFactory(
                organisation=o.organisation, user=UserFactory(email=f"pi{n}@{o.organisation.domains.first().domain}")
            ).user
        )
    )
    title = "Korean foundation model pre-training"
    abstract = "We pre-train a Korean language model."
    field = "nlp"
    gpu_model = "H100-80GB"
    gpu_count = 8
    gpu_hours = 10000
    starts_on = factory.LazyAttribute(lambda o: o.call.allocation_starts_on)
    ends_on = factory.LazyAttribute(lambda o: o.call.allocation_starts_on + timedelta(days=90))
    justification = "8 GPUs for 52 days of training."
    data_sensitivity = "public"


def award_of(application: Application, **changes) -> dict:
    """The approval arguments that grant exactly what was asked, with `changes` applied."""
    values = {
        "gpu_model": application.gpu_model,
        "gpu_count": application.gpu_count,
        "gpu_hours": application.gpu_hours,
        "starts_on": application.starts_on,
        "ends_on": application.ends_on,
    }
    values.update(changes)
    return values

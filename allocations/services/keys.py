"""Users' SSH public keys. A change reaches every node where the user has an active grant."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from allocations.keys import InvalidKey, parse_public_key
from allocations.models import SshKey
from allocations.services.grants import keys_changed
from portal.errors import PortalError

MAX_KEYS = 20


@transaction.atomic
def sshkey_add(*, user, text: str, name: str = "") -> SshKey:
    try:
        key = parse_public_key(text)
    except InvalidKey as exc:
        raise PortalError(str(exc), code="invalid_key") from exc
    holder = SshKey.objects.filter(fingerprint=key.fingerprint).values_list("user_id", flat=True).first()
    if holder == user.pk:
        raise PortalError(_("You have already added this key."), code="duplicate_key")
    if holder is not None:
        # A key is one person's: shared keys make every login on a node ambiguous.
        raise PortalError(
            _("This key belongs to another account. Each person needs their own key."), code="key_of_another_user"
        )
    if SshKey.objects.filter(user=user).count() >= MAX_KEYS:
        raise PortalError(_("At most %(n)d keys per user.") % {"n": MAX_KEYS}, code="too_many_keys")
    try:
        with transaction.atomic():
            ssh_key = SshKey.objects.create(
                user=user,
                name=name.strip()[:100],
                key_type=key.key_type,
                public_key=key.line,
                fingerprint=key.fingerprint,
                bits=key.bits,
            )
    except IntegrityError as exc:  # the same key added elsewhere at the same moment
        raise PortalError(
            _("This key belongs to another account. Each person needs their own key."), code="key_of_another_user"
        ) from exc
    transaction.on_commit(lambda: keys_changed(user=user))
    return ssh_key


@transaction.atomic
def sshkey_remove(*, ssh_key: SshKey) -> None:
    user = ssh_key.user
    ssh_key.delete()
    transaction.on_commit(lambda: keys_changed(user=user))

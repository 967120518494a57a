"""What users are given on nodes: keys, unix accounts, Jupyter servers, and the remote actions
(provisioning tasks) that put them there."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models.grants import Grant
from allocations.models.nodes import Node, unix_name_validator
from allocations.reasons import ACCOUNT_REASONS


class SshKey(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys", verbose_name=_("user")
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    key_type = models.CharField(_("type"), max_length=32)
    public_key = models.TextField(_("public key"))
    # One key belongs to one person: the same key on two accounts is refused (unique, not per user).
    fingerprint = models.CharField(_("fingerprint"), max_length=100, unique=True)
    bits = models.PositiveIntegerField(_("bits"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("SSH key")
        verbose_name_plural = _("SSH keys")
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.key_type} {self.fingerprint}"


class UnixId(models.Model):
    """A user's uid (their private group has the same id), handed out once by the portal and
    never again, so that one person has the same uid on every node and a shared filesystem
    never mixes two people's files. Rows are never deleted. Grants have no unix group: a GPU's
    device file lets in its grant's members by uid (an ACL the agent writes)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="unix_id")
    number = models.PositiveBigIntegerField(_("uid"), unique=True, null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("unix id")
        verbose_name_plural = _("unix ids")

    def __str__(self) -> str:
        return f"{self.number}"


class NodeAccount(models.Model):
    """A user's unix account on a node. The name is derived from the user id, never typed.
    Only `allocations.services.accounts.account_set_state` sets `state`, following ALLOWED,
    with a NodeAccountEvent per change."""

    class State(models.TextChoices):
        WANTED = "wanted", _("To be created")
        ACTIVE = "active", _("Active")
        REVOKED = "revoked", _("Revoked")

    # REVOKED → ACTIVE: a revocation queued before a resume runs first, then the account is
    # created again; the state records what the node did, in the order it did it.
    ALLOWED = {
        State.WANTED: {State.ACTIVE, State.REVOKED},
        State.ACTIVE: {State.REVOKED},
        State.REVOKED: {State.WANTED, State.ACTIVE},
    }

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="node_accounts", verbose_name=_("user")
    )
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="accounts", verbose_name=_("node"))
    username = models.CharField(_("unix user name"), max_length=32, validators=[unix_name_validator])
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.WANTED)
    expires_on = models.DateField(_("account expiry"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("node account")
        verbose_name_plural = _("node accounts")
        constraints = [
            models.UniqueConstraint(fields=["user", "node"], name="nodeaccount_one_per_user_node"),
            models.UniqueConstraint(fields=["node", "username"], name="nodeaccount_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.node}"


class NodeAccountEvent(models.Model):
    """One change of an account's state (audit): from, to, why, and the task that did it."""

    account = models.ForeignKey(
        NodeAccount, on_delete=models.CASCADE, related_name="events", verbose_name=_("node account")
    )
    old_status = models.CharField(_("from"), max_length=16, choices=NodeAccount.State.choices)
    new_status = models.CharField(_("to"), max_length=16, choices=NodeAccount.State.choices)
    reason = models.TextField(_("reason"), blank=True)
    task = models.ForeignKey(
        "allocations.ProvisioningTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("task"),
    )
    created_at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("account event")
        verbose_name_plural = _("account events")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_old_status_display() or '–'} → {self.get_new_status_display()}"

    @property
    def reason_text(self) -> str:
        """The reason in the reader's language where the portal wrote it (`allocations.reasons`)."""
        return ACCOUNT_REASONS.show(self.reason)


class JupyterSession(models.Model):
    """One member's JupyterLab for one grant (grant and member), run under the member's own
    account and listening on a unix socket only that account can reach (`socket_path`, as the
    node reported it). The token is never stored: `token_nonce` is new on every start and the
    token is derived from it with a key from SECRET_KEY (allocations.services.jupyter), so the
    database alone does not reveal it."""

    class State(models.TextChoices):
        WANTED = "wanted", _("Starting")
        RUNNING = "running", _("Running")
        STOPPED = "stopped", _("Stopped")

    grant = models.ForeignKey(Grant, on_delete=models.CASCADE, related_name="jupyter_sessions", verbose_name=_("grant"))
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="jupyter_sessions", verbose_name=_("node"))
    account = models.ForeignKey(
        NodeAccount, on_delete=models.PROTECT, related_name="jupyter_sessions", verbose_name=_("unix account")
    )
    socket_path = models.CharField(_("socket"), max_length=200, blank=True)
    token_nonce = models.CharField(_("token nonce"), max_length=64, editable=False)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.WANTED)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("Jupyter session")
        verbose_name_plural = _("Jupyter sessions")
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "account"],
                condition=~models.Q(state="stopped"),
                name="jupyter_one_live_per_grant_member",
            ),
        ]

    def __str__(self) -> str:
        return _("JupyterLab of %(account)s for grant #%(grant)s") % {"account": self.account, "grant": self.grant_id}

    @property
    def agent_name(self) -> str:
        """The session's name on the node (state file, socket): one per grant of an account."""
        return f"grant-{self.grant_id}"


class ProvisioningTask(models.Model):
    """One remote action on a node. Every verb is idempotent, so a task interrupted anywhere
    (worker killed, connection lost) is simply run again."""

    class Kind(models.TextChoices):
        INVENTORY = "inventory", _("Read GPU inventory")
        ENSURE_ACCOUNT = "ensure-account", _("Create account")
        SET_KEYS = "set-keys", _("Install SSH keys")
        SET_GPUS = "set-gpus", _("Restrict visible GPUs")
        START_JUPYTER = "start-jupyter", _("Start Jupyter")
        STOP_JUPYTER = "stop-jupyter", _("Stop Jupyter")
        REVOKE = "revoke", _("Revoke access")
        GRANT_GPUS = "grant-gpus", _("Open the GPUs to the grant's members")
        RELEASE_GPUS = "release-gpus", _("Take the grant's GPUs back")

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        RETRYING = "retrying", _("Waiting to retry")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    ALLOWED = {
        State.QUEUED: {State.RUNNING, State.FAILED},
        State.RUNNING: {State.SUCCEEDED, State.RETRYING, State.FAILED, State.RUNNING},
        State.RETRYING: {State.RUNNING, State.FAILED, State.QUEUED},
        State.SUCCEEDED: set(),
        State.FAILED: {State.QUEUED},
    }
    OPEN = frozenset({State.QUEUED, State.RUNNING, State.RETRYING})

    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="tasks", verbose_name=_("node"))
    grant = models.ForeignKey(
        Grant, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks", verbose_name=_("grant")
    )
    account = models.ForeignKey(
        NodeAccount,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="tasks",
        verbose_name=_("unix account"),
    )
    kind = models.CharField(_("action"), max_length=32, choices=Kind.choices)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)

    class Meta:
        verbose_name = _("provisioning task")
        verbose_name_plural = _("provisioning tasks")
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["node", "state"]),
            models.Index(fields=["grant", "state"]),
            models.Index(fields=["created_at", "id"], name="task_created_idx"),  # the admin's list order
            # /metrics: unfinished and failed tasks by state, without reading the succeeded ones.
            models.Index(
                fields=["state", "created_at"], condition=~models.Q(state="succeeded"), name="task_unfinished_idx"
            ),
        ]

    def __str__(self) -> str:
        return _("%(kind)s on %(node)s (%(state)s)") % {
            "kind": self.get_kind_display(), "node": self.node, "state": self.get_state_display(),
        }  # fmt: skip

    @classmethod
    def needs_action(cls) -> models.Q:
        """The failed tasks an operator must act on (the ProvisioningTasksFailed alert; one
        condition, usable in a filter or a conditional aggregate, so no extra query). Failed
        tasks stay forever as history; these are the ones whose purpose still stands:
        - a revocation whose account is still not revoked (whatever became of the grant: the
          user may still log in);
        - any other task of a grant still pending, provisioning, active or suspended, or of no
          grant, unless its account has been revoked since (nothing left to give access to);
        and in both cases only if no later task of the same kind on the same node and account
        succeeded (reconcile queued the repair again and it worked)."""
        from django.db.models.functions import Coalesce

        later_success = (
            cls.objects.filter(
                node=models.OuterRef("node"),
                kind=models.OuterRef("kind"),
                state=cls.State.SUCCEEDED,
                created_at__gt=models.OuterRef("created_at"),
            )
            .annotate(same_account=Coalesce("account_id", 0))
            .filter(same_account=Coalesce(models.OuterRef("account_id"), 0))
        )
        live = (Grant.Status.PENDING, Grant.Status.PROVISIONING, Grant.Status.ACTIVE, Grant.Status.SUSPENDED)
        revoke = models.Q(kind=cls.Kind.REVOKE)
        account_open = ~models.Q(account__state=NodeAccount.State.REVOKED)
        purpose_stands = account_open & (revoke | models.Q(grant__isnull=True) | models.Q(grant__status__in=live))
        return models.Q(state=cls.State.FAILED) & purpose_stands & ~models.Exists(later_success)

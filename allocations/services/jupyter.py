"""Jupyter sessions: each member of a grant gets their own JupyterLab under their own account,
on a unix socket in a 0700 folder of theirs on the node (reached through `ssh -L`), with a
token that is new on every start and shown only to them.

The token is never stored. A session keeps a random nonce, replaced on every start; the token
is HMAC(a key derived from SECRET_KEY, session id + nonce), derived when a start task is sent
to the node and when the page shows it to its owner. A start task's payload holds the nonce it
was queued with, so a retried task sends the same token (the agent keeps that server) while a
newer start always brings a new one.
"""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from allocations.models import Grant, JupyterSession, NodeAccount, ProvisioningTask
from allocations.services.enqueue import enqueue_node
from portal.errors import PortalError

K = ProvisioningTask.Kind
S = JupyterSession.State
TOKEN_SALT = "allocations.jupyter.token"  # noqa: S105 - an HMAC key label, not a secret


def jupyter_token(session_id: int, nonce: str) -> str:
    return salted_hmac(TOKEN_SALT, f"{session_id}:{nonce}", algorithm="sha256").hexdigest()


def session_token(session: JupyterSession) -> str:
    """The token of the session's current start, for its owner's eyes only."""
    return jupyter_token(session.pk, session.token_nonce)


def live_session(grant: Grant, account: NodeAccount) -> JupyterSession | None:
    return JupyterSession.objects.filter(grant=grant, account=account).exclude(state=S.STOPPED).first()


def session_for(grant: Grant, account: NodeAccount) -> JupyterSession:
    """The member's live session of the grant, made if missing; the database keeps one live
    session per grant and member."""
    session = live_session(grant, account)
    if session:
        return session
    try:
        with transaction.atomic():
            return JupyterSession.objects.create(
                grant=grant, node=account.node, account=account, token_nonce=secrets.token_hex(16)
            )
    except IntegrityError:  # made by a concurrent provisioning of the same grant
        return live_session(grant, account)


def session_queue_start(*, session: JupyterSession, gpus: list[str]) -> ProvisioningTask:
    """Queue a start with a new nonce, so the server that comes up has a token never used before
    (a server still running with the old one is stopped by the agent)."""
    session.token_nonce = secrets.token_hex(16)
    session.state = S.WANTED
    session.updated_at = timezone.now()
    session.save(update_fields=["token_nonce", "state", "updated_at"])
    return ProvisioningTask.objects.create(
        node=session.node, grant=session.grant, account=session.account, kind=K.START_JUPYTER,
        payload={"username": session.account.username, "session": session.agent_name, "gpus": gpus,
                 "_meta": {"session": session.pk, "nonce": session.token_nonce}},
    )  # fmt: skip


def session_queue_stop(*, session: JupyterSession) -> ProvisioningTask:
    """Queue stopping this one server; the member's servers of other grants keep running."""
    return ProvisioningTask.objects.create(
        node=session.node, grant=session.grant, account=session.account, kind=K.STOP_JUPYTER,
        payload={"username": session.account.username, "session": session.agent_name,
                 "_meta": {"session": session.pk}},
    )  # fmt: skip


def agent_payload(task: ProvisioningTask) -> dict:
    """What a task sends to the agent: a start gets its token here, derived from the nonce it was
    queued with; the token never reaches the database."""
    meta = task.payload.get("_meta", {})
    if task.kind != K.START_JUPYTER or "nonce" not in meta:
        return task.payload
    return {**task.payload, "token": jupyter_token(meta["session"], meta["nonce"])}


def jupyter_after_task(task: ProvisioningTask, result: dict) -> None:
    """Record a start or stop the node confirmed. A start counts only while its nonce is the
    session's current one: a superseded start is followed by a newer task anyway."""
    meta = task.payload.get("_meta", {})
    if "session" not in meta:
        return
    sessions = JupyterSession.objects.filter(pk=meta["session"])
    if task.kind == K.START_JUPYTER:
        sessions.filter(token_nonce=meta.get("nonce")).update(
            state=S.RUNNING, socket_path=result.get("socket", ""), updated_at=timezone.now()
        )
    elif task.kind == K.STOP_JUPYTER:
        sessions.update(state=S.STOPPED, updated_at=timezone.now())


def jupyter_repairs(*, account: NodeAccount, grants, seen: dict, gpus_of) -> list[ProvisioningTask]:
    """Reconcile: a start for each of the member's live grants on the node whose server the node
    does not report running (`seen`: the agent's session name → {"running": …})."""
    tasks = []
    for grant in grants:
        session = session_for(grant, account)
        if not seen.get(session.agent_name, {}).get("running"):
            tasks.append(session_queue_start(session=session, gpus=gpus_of(grant)))
    return tasks


@transaction.atomic
def grant_restart_jupyter(*, grant: Grant, user) -> JupyterSession:
    """Restart the requester's own server of the grant with a new token; other members'
    servers are not touched."""
    grant = Grant.objects.select_for_update().get(pk=grant.pk)
    if grant.status != Grant.Status.ACTIVE:
        raise PortalError(_("Jupyter can only be restarted while the grant is active."), code="not_active")
    session = (
        JupyterSession.objects.filter(grant=grant, account__user=user)
        .exclude(state=S.STOPPED)
        .select_related("account", "node")
        .first()
    )
    if session is None:
        raise PortalError(_("You have no Jupyter server in this grant."), code="no_session")
    session_queue_start(session=session, gpus=grant.gpu_uuids())
    enqueue_node(session.node_id)
    return session

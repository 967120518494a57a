"""Each node's bearer token for posting samples: random, shown once (to the installer or to the
operator who rotated it), stored only as its SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from allocations.models import Node


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def node_samples_token_rotate(*, node: Node) -> str:
    """A new token for the node; the old one stops working at once. Returns the token: the only
    time it exists outside the node."""
    token = secrets.token_urlsafe(32)
    Node.objects.filter(pk=node.pk).update(samples_token_sha256=_digest(token), samples_token_set_at=timezone.now())
    return token


@transaction.atomic
def node_samples_token_set(*, node: Node, token: str) -> None:
    """Store the hash of a token the installer has just put on the node."""
    Node.objects.filter(pk=node.pk).update(samples_token_sha256=_digest(token), samples_token_set_at=timezone.now())


@transaction.atomic
def node_samples_token_revoke(*, node: Node) -> None:
    """No token: the node's posts are refused until a new one is set."""
    Node.objects.filter(pk=node.pk).update(samples_token_sha256="", samples_token_set_at=timezone.now())


def node_for_samples_token(*, hostname: str, token: str) -> Node | None:
    """The node whose token this is, or None (unknown node, no token, wrong token: all alike)."""
    node = Node.objects.filter(hostname=hostname).only("pk", "hostname", "samples_token_sha256").first()
    expected = node.samples_token_sha256 if node else ""
    if not expected or not token:
        hmac.compare_digest(_digest(token or "-"), _digest("-"))  # same work either way
        return None
    return node if hmac.compare_digest(_digest(token), expected) else None

"""The nodes' API: /api/v1/nodes/<hostname>/samples. A node authenticates with its bearer token
(no session, no cookie, no CSRF token: nothing a browser holds works here). Every refusal is a
4xx with a JSON reason and stores nothing."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from allocations.services.sample_ingest import BatchRejected, samples_ingest
from allocations.services.sample_tokens import node_for_samples_token


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"ok": False, "error": code, "message": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="gpu-portal nodes"'
    return response


@csrf_exempt
@require_POST
def node_samples(request: HttpRequest, hostname: str) -> JsonResponse:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    node = node_for_samples_token(hostname=hostname, token=token.strip()) if scheme.lower() == "bearer" else None
    if node is None:
        return _refuse(401, "unauthorized", "unknown node or wrong token")
    if request.content_type != "application/json":
        return _refuse(415, "bad_content_type", "send application/json")
    limit = settings.METERING_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _refuse(413, "too_large", f"a batch is at most {limit} bytes")
    body = request.read(limit + 1)  # never more than the limit, whatever the header said
    if len(body) > limit:
        return _refuse(413, "too_large", f"a batch is at most {limit} bytes")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
        return _refuse(400, "malformed_json", "the body is not valid JSON")
    try:
        result = samples_ingest(node=node, payload=payload)
    except BatchRejected as exc:
        return _refuse(exc.http_status, exc.code, exc.message)
    return JsonResponse(
        {"ok": True, "stored": result.stored, "duplicate": result.duplicate}, status=200 if result.duplicate else 201
    )

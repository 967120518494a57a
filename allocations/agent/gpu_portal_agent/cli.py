"""The verbs sudo lets the provisioning account run, and `main`: one JSON object in on stdin,
one JSON object out on stdout, whatever happens."""

from __future__ import annotations

import errno
import json
import signal
import sys

from .accounts import verb_ensure_account, verb_revoke, verb_set_gpus, verb_set_keys, verb_status
from .common import VERB_TIMEOUT, VERSION, AgentError, clean_process_state, lift_limits, load_config
from .devices import verb_grant_gpus, verb_inventory, verb_release_gpus
from .jupyter import verb_start_jupyter, verb_stop_jupyter
from .metering import verb_push, verb_sample


def verb_version(data: dict, config: dict) -> dict:
    return {"version": VERSION}


VERBS = {
    "version": verb_version,
    "sample": verb_sample,
    "push": verb_push,
    "inventory": verb_inventory,
    "status": verb_status,
    "ensure-account": verb_ensure_account,
    "set-keys": verb_set_keys,
    "set-gpus": verb_set_gpus,
    "start-jupyter": verb_start_jupyter,
    "stop-jupyter": verb_stop_jupyter,
    "revoke": verb_revoke,
    "grant-gpus": verb_grant_gpus,
    "release-gpus": verb_release_gpus,
}


def main(argv: list) -> int:
    def answer(obj: dict, code: int) -> int:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
        return code

    if len(argv) != 2 or argv[1] not in VERBS:
        return answer({"ok": False, "error": "bad_verb", "message": f"verbs: {', '.join(sorted(VERBS))}"}, 2)

    def too_long(_signum, _frame):
        raise AgentError("timeout", f"{argv[1]} did not finish in {VERB_TIMEOUT} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(VERB_TIMEOUT)
    try:
        # sudo passes on the caller's limits: a file-size limit would stop the agent's writes
        # half-way, a CPU limit kill it mid-verb; root lifts them for this run (and the user's
        # Jupyter it starts). Where it cannot, a stopped write answers file_too_large and
        # replaces nothing, and start-jupyter refuses (caller_limits).
        lift_limits()
        clean_process_state()
        if sys.stdin is None:  # started with its standard input closed
            raise AgentError("bad_input", "no input: standard input is closed")
        raw = sys.stdin.read()
        data = json.loads(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise AgentError("bad_input", "input must be a JSON object")
        result = VERBS[argv[1]](data, load_config())
    except AgentError as exc:
        return answer({"ok": False, "error": exc.code, "message": exc.message}, 2)
    except ValueError as exc:
        return answer({"ok": False, "error": "bad_input", "message": str(exc)}, 2)
    except OSError as exc:
        # A full disk (or quota) may be freed: worth another try. A file-size limit is the
        # caller's own, the same on every try.
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return answer({"ok": False, "error": "disk_full", "message": str(exc)}, 2)
        if exc.errno == errno.EFBIG:
            return answer({"ok": False, "error": "file_too_large", "message": str(exc)}, 2)
        return answer({"ok": False, "error": "internal", "message": f"{type(exc).__name__}: {exc}"}, 3)
    except Exception as exc:  # noqa: BLE001 - answer in JSON whatever happens
        return answer({"ok": False, "error": "internal", "message": f"{type(exc).__name__}: {exc}"}, 3)
    return answer({"ok": True, **result}, 0)

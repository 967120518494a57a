"""Progress of long admin jobs (node operations, invoicing runs), seen while they run.

A job writes its steps to its own row as it goes (each step is committed on its own, outside the
work's transactions, so a reader sees it at once). The admin change page of that row shows the
steps and the state (`portal.admin_progress`); `static/js/admin-progress.js` polls the row's
JSON status endpoint and redraws them until the job has finished. No inline script or style:
the strict CSP stays. Without JavaScript, the page carries a plain reload link.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# Steps kept on a row: a run over thousands of organisations keeps the latest ones.
MAX_STEPS = 200
STALLED_AFTER = timedelta(minutes=15)


def step_entry(text: str, *, at: datetime | None = None) -> dict[str, str]:
    """One step as stored in a row's `steps` JSON list."""
    return {"at": (at or timezone.now()).isoformat(), "text": text}


def steps_shown(steps: list[dict[str, str]]) -> list[dict[str, str]]:
    """The steps as the admin shows them: `at` in Seoul time (ISO, with its offset) and `time`,
    the Seoul time of day with the zone ("09:25:49 KST"), which the panel and the script draw as
    they are; the stored steps are UTC and never shown raw."""
    shown = []
    for step in steps:
        at = timezone.localtime(datetime.fromisoformat(step["at"]))
        shown.append({**step, "at": at.isoformat(), "time": at.strftime("%H:%M:%S %Z")})
    return shown


def steps_append(steps: list[dict[str, str]], text: str) -> list[dict[str, str]]:
    """The list with `text` appended, trimmed to the latest MAX_STEPS."""
    return [*steps, step_entry(text)][-MAX_STEPS:]


def elapsed_text(seconds: float) -> str:
    """`12.3 s` or `4 min 05 s`: what a progress line shows as elapsed time."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def stalled_note(*, steps: list[dict[str, str]], since: datetime, finished: bool) -> str:
    """A running job without a new step for STALLED_AFTER (its worker was probably killed): say so
    beside its state, rather than showing "running" for ever."""
    if finished:
        return ""
    last = datetime.fromisoformat(steps[-1]["at"]) if steps else since
    if timezone.now() - last < STALLED_AFTER:
        return ""
    when = f"{timezone.localtime(last):%H:%M %Z}"  # Seoul time, with its zone like every admin time
    return str(_("no progress since %(time)s: the job may have stopped") % {"time": when})

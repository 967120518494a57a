"""Development mail: every message as decoded UTF-8 text, printed to the console and written
to one file per message under `DEV_MAIL_DIR` (`.devdata/mail/` with `make run`).

Django's console backend prints raw MIME: quoted-printable line breaks cut links and Korean
bodies come out as base64. Here the reader gets the headers and the text exactly as written.
Never used in production (settings pick SMTP there).
"""

from __future__ import annotations

import re
import sys
import threading
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

_lock = threading.Lock()


def render_text(message: EmailMessage) -> str:
    """Headers and every text part of `message`, decoded."""
    lines = [
        f"From: {message.from_email}",
        f"To: {', '.join(message.to)}",
        *([f"Cc: {', '.join(message.cc)}"] if message.cc else []),
        *([f"Reply-To: {', '.join(message.reply_to)}"] if message.reply_to else []),
        f"Subject: {message.subject}",
        f"Date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
        str(message.body).rstrip(),
    ]
    for content, mimetype in getattr(message, "alternatives", []) or []:
        lines += ["", f"--- alternative part ({mimetype}) ---", str(content).rstrip()]
    return "\n".join(lines) + "\n"


class DevMailBackend(BaseEmailBackend):
    def __init__(self, *args: object, directory: str | None = None, stream=None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.directory = Path(directory or settings.DEV_MAIL_DIR)
        self.stream = stream or sys.stdout

    def _file_for(self, message: EmailMessage) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        to = re.sub(r"[^A-Za-z0-9@._-]+", "_", (message.to or ["nobody"])[0])[:60]
        return self.directory / f"{stamp}-{to}.txt"

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        if not email_messages:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        sent = 0
        with _lock:
            for message in email_messages:
                text = render_text(message)
                path = self._file_for(message)
                path.write_text(text, encoding="utf-8")
                rule = "-" * 72
                self.stream.write(f"{rule}\n[mail] saved as {path}\n{text}{rule}\n")
                self.stream.flush()
                sent += 1
        return sent

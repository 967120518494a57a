"""Fixed phrases our services store in English (event reasons, a grant's status reason) and
staff read in their own language. The stored text stays what it always was (rows written before
this module read the same); a `Phrases` table recognises a phrase when shown (`show`), and the
tests that show what the services write pin the two together. Text not in a table (a reason
typed by finance, an error from a node) is shown as stored; so is the part of a phrase that was
typed (`void: <what finance typed>`). A parameter named `phrase` is
itself shown through the table (a payment's reason inside "paid again, to refund: …"); one
named `kind` is a label of the portal's own (a provisioning step's English name), translated."""

from __future__ import annotations

import re

from django.utils.formats import number_format
from django.utils.translation import gettext

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# invoice_mark_paid appends the payment's reference to whatever reason it is given.
REFERENCE = re.compile(r"(?P<phrase>.*?)(?P<reference> \[[^\]]*\])", re.S)


STATEMENT = re.compile(r"(?P<month>\d{4}-\d{2}) statement #(?P<pk>\d+)")


def _statement(reference: str) -> str:
    """An invoice reference as stored (`Invoice.reference`): a statement's in the reader's words."""
    found = STATEMENT.fullmatch(reference)
    return gettext("%(month)s statement #%(pk)s") % found.groupdict() if found else reference


def grouped(number: int | float) -> str:
    """A number grouped by thousands in every language (12,960)."""
    return number_format(number, force_grouping=True)


def _pattern(english: str) -> re.Pattern:
    parts = PLACEHOLDER.split(english)
    # split() alternates literal text and placeholder names: literals at even positions.
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
    return re.compile(regex, re.S)


class Phrases:
    """English phrases (each marked with gettext_noop where it is listed, so that the catalogue
    has them) with `%(name)s` parameters. Listed in the order they are tried: a phrase that
    another one's parameter could swallow comes first."""

    def __init__(self, *english: str) -> None:
        self.english = english
        self._patterns = [(_pattern(text), text) for text in english]

    def show(self, text: str) -> str:
        """`text` in the active language when it is one of the phrases, else as stored. A
        payment's reference appended to a phrase (" [transfer KB-1]") stays at the end, never
        inside a parameter ("…, f@x.kr [transfer KB-1] 님이 기록함")."""
        if not text:
            return text
        reference = REFERENCE.fullmatch(text)
        if reference:
            shown = self._phrase(reference["phrase"])
            if shown is not None:
                return shown + reference["reference"]
        shown = self._phrase(text)
        return text if shown is None else shown

    def _phrase(self, text: str) -> str | None:
        for pattern, english in self._patterns:
            found = pattern.fullmatch(text)
            if found:
                params = found.groupdict()
                if "phrase" in params:
                    params["phrase"] = self.show(params["phrase"])
                if "kind" in params:
                    params["kind"] = gettext(params["kind"])
                if "number" in params:  # a statement has no number: its English reference
                    params["number"] = _statement(params["number"])
                return gettext(english) % params
        return None

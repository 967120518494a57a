"""`{% scaled_result_list cl %}`: Django's `{% result_list cl %}` (the same template and the same
HTML), with the rows of a ScaledAdmin list written by `portal.admin_rows` (issue 13). Any other
list, an editable one or a popup goes through Django's own tag."""

from __future__ import annotations

from django.contrib.admin.templatetags.admin_list import ResultList, result_headers, result_list
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.template import Library

from portal.admin_rows import RowRenderer, fast_rows_apply
from portal.admin_scale import ScaledChangeList

register = Library()


def scaled_result_list(cl) -> dict:
    """The context of Django's `result_list` inclusion tag; each row is one item (its cells
    already joined), which the template writes exactly as it wrote the cells one by one."""
    if not isinstance(cl, ScaledChangeList) or not fast_rows_apply(cl):
        return result_list(cl)
    headers = list(result_headers(cl))
    renderer = RowRenderer(cl)
    return {
        "cl": cl,
        "result_hidden_fields": [],  # only list_editable forms have hidden fields
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "results": [ResultList(None, [renderer.row(result)]) for result in cl.result_list],
    }


@register.tag(name="scaled_result_list")
def scaled_result_list_tag(parser, token) -> InclusionAdminNode:
    return InclusionAdminNode(
        "scaled_result_list",
        parser,
        token,
        func=scaled_result_list,
        template_name="change_list_results.html",
        takes_context=False,
    )

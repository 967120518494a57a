"""The portal's date formats, the same in every language: ISO days ("2026-12-14") and moments to
the minute with the portal's zone ("2026-12-14 09:30 KST"), as the pages that write dates
themselves (`|date:"Y-m-d H:i"`, `admin_scale.local_time`) and the invoices do. Each language's
module takes these; the names not set here (input formats, separators, month and day names for
the charts) stay Django's for the language."""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
TIME_FORMAT = "H:i"
YEAR_MONTH_FORMAT = "Y-m"

__all__ = [
    "DATETIME_FORMAT",
    "DATE_FORMAT",
    "SHORT_DATETIME_FORMAT",
    "SHORT_DATE_FORMAT",
    "TIME_FORMAT",
    "YEAR_MONTH_FORMAT",
]

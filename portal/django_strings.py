"""Django's (and allauth's) own strings that their Korean catalogues leave untranslated (or
translate wrongly), listed here so that `make messages` puts them in ours (LOCALE_PATHS comes
before Django's catalogues). The admin's JavaScript strings (calendar, time-zone note) are in
`locale/ko/LC_MESSAGES/djangojs.po`, kept by hand: `make messages` reads only the `django` domain."""

from django.utils.translation import gettext_noop, ngettext_lazy

DJANGO_STRINGS = [
    # The empty choice of every select (django.db.models.fields.BLANK_CHOICE_LABEL, Django 6.1).
    gettext_noop("- Select an option -"),
    # The admin: its logged-out page, the date filter above a list, a refused deletion.
    gettext_noop("Logout"),
    gettext_noop("Filter by %(field_name)s"),
    gettext_noop(", "),
    ngettext_lazy("…and %(count)d more object.", "…and %(count)d more objects.", "count"),
    # allauth's sign-in checkbox, which its Korean catalogue calls "아이디 저장" (save the user name):
    # it keeps the session, and ours says so.
    gettext_noop("Remember Me"),
]

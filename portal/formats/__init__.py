"""The portal's format modules (settings.FORMAT_MODULE_PATH): every date is written as ISO in
both languages ("2026-12-14", "2026-12-14 09:30 KST"; portal/formats/iso.py), and every time
(the admin's included) is Seoul time and says so (e.g. "KST"), so that an operator abroad does
not read it as their own. Only the names set there replace Django's locale formats; the rest
stay Django's."""

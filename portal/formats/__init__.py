"""Date formats that name the time zone: every time shown (the admin's included) is Seoul time
and says so (e.g. "KST"), so that an operator abroad does not read it as their own. Only the
names set here replace Django's locale formats; the rest stay Django's."""

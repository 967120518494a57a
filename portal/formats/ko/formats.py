from portal.formats.iso import *  # noqa: F403 - the portal writes dates as ISO in every language

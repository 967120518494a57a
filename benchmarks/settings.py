"""The portal's settings for `make bench`: the same, plus the reference page's URL."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.urls"

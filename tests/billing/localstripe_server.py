"""Runs localstripe on a loopback port for the tests (its CLI binds every interface), with its
state in memory only: its store pickles to a fixed /tmp path otherwise."""

import sys

from aiohttp import web
from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

if __name__ == "__main__":
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)

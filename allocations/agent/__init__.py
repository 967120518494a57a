"""What runs on a GPU node: the agent (the `gpu_portal_agent` package, shipped to a node as one
zipapp file by `allocations.node_install.render_agent`), its installer (`gpu_portal_install.py`)
and the pinned requirements of the node's Jupyter. The portal-side code that prepares an
installation lives in `allocations.node_install`."""

"""What runs on a GPU node: the agent (`gpu_portal_agent.py`), its installer
(`gpu_portal_install.py`) and the pinned requirements of the node's Jupyter. The portal-side
code that prepares an installation lives in `allocations.node_install`."""

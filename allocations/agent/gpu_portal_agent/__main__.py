"""`python3 -m allocations.agent.gpu_portal_agent VERB` from a checkout, as root: the agent
with its default configuration path (e.g. `inventory`, to record a GPU machine's NVML answer).
Nodes run the single file `allocations.node_install.render_agent` builds."""

import sys

from .cli import main

sys.exit(main(sys.argv))

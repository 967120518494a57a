"""The second GPU fence on nodes with systemd and cgroup v2: the user's slice may open only the
user's GPUs (and the driver's shared files), whatever the device files say. These machines have
no systemd, so the rule the agent would apply is checked as a command line; on the sshd test
node the agent says it could not set one."""

from allocations.agent import gpu_portal_agent as agent
from tests.allocations.test_node_boundary import researcher  # noqa: F401 - the fixture


def test_the_slice_allows_the_users_gpus_and_the_shared_driver_files_only():
    command = agent.device_cgroup_command(200123, ["/dev/nvidia3", "/dev/nvidia5"], {})
    assert command[:6] == [
        "systemctl",
        "set-property",
        "--runtime",
        "user-200123.slice",
        "DevicePolicy=auto",
        "DeviceAllow=",
    ]
    rules = [arg.removeprefix("DeviceAllow=") for arg in command[6:]]
    assert rules[:2] == ["/dev/nvidia3 rw", "/dev/nvidia5 rw"]
    assert "/dev/nvidiactl rw" in rules and "/dev/nvidia-uvm rw" in rules
    assert not any(rule.startswith("/dev/nvidia4") for rule in rules)
    assert "char-infiniband rw" in rules  # NCCL over RDMA keeps working


def test_an_operator_can_turn_the_slice_rule_off():
    assert agent.device_cgroup_command(200123, ["/dev/nvidia3"], {"device_cgroup": False}) == []


def test_without_systemd_the_agent_says_the_second_fence_is_missing(researcher, gpu_node):  # noqa: F811
    from allocations.services import nodes as node_services

    grant, username, _key = researcher
    with node_services.connect(gpu_node) as conn:
        answer = conn.agent("set-gpus", {"username": username, "gpus": grant.gpu_uuids()})
    assert answer["device_cgroup"] == "unavailable"

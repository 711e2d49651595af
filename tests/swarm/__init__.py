"""Swarm tests (core: test_core_*, simulator: test_sim*, network: test_net_*)."""

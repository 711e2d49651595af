"""Run the whole system on one machine: broker, gateways, swarm nodes and emulated boards (HIL, demo)."""

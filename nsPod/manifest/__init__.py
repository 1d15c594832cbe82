"""The manifest: YAML loading and validation, quantities, QoS, the sysctl policy."""

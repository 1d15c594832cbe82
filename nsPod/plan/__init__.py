"""Pure decisions: the pod plan made from a manifest, its records, the kubelet's lifecycle rules."""

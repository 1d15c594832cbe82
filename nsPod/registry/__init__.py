"""Images by reference: Kubernetes' normalisation, registries.conf, credentials, the OCI
distribution protocol, and the shared layer store pulls fill (docs/design.md)."""

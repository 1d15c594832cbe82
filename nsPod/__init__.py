"""nspod: Kubernetes' pod model on one Linux host, straight on the kernel.

Importing the package loads nothing else: no C extension, pyroute2, prctl, yaml or click.
"""
__version__ = "0.1.0"

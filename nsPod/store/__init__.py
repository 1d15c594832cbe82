"""What lives on disk under the state root: pod state, status, logs, images, locks."""

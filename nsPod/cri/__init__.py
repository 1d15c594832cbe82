"""The CRI v1 server (`nspod cri`): Kubernetes' RuntimeService and ImageService over gRPC,
on nspod's library (api/). protocol.py owns grpc and the CRI messages."""

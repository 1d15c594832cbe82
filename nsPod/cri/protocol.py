"""The one owner of grpc and of the CRI v1 messages (the `container-runtime-interface-api`
package's cri_api.v1, generated from k8s.io/cri-api's api.proto at the version cri-tools 1.34
speaks; see docs/design.md). Everything else in nsPod/cri handles `pb` messages and raises
NspodError; this module turns those into gRPC status codes.
"""
import concurrent.futures
import functools
import logging
import sys

import grpc
from cri_api.v1 import api_pb2 as pb
from cri_api.v1 import api_pb2_grpc as rpc

from nsPod.errors import ImageError, InputError, NspodError, PodExists, PodNotFound, describe

log = logging.getLogger("nspod.cri")

__all__ = ["pb", "Code", "CriError", "NotFound", "serve", "channel", "runtime_stub",
           "image_stub", "RpcError", "rpc_methods"]

Code = grpc.StatusCode
RpcError = grpc.RpcError


class CriError(NspodError):
    """An error with the gRPC status code it is answered with."""

    code = Code.UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class NotFound(CriError):
    code = Code.NOT_FOUND


def status_of(error):
    """(gRPC code, one line) for an exception raised while answering a request."""
    if isinstance(error, CriError):
        return error.code, str(error)
    if isinstance(error, InputError):
        return Code.INVALID_ARGUMENT, describe(error)
    if isinstance(error, PodNotFound):
        return Code.NOT_FOUND, describe(error)
    if isinstance(error, PodExists):
        return Code.ALREADY_EXISTS, describe(error)
    if isinstance(error, ImageError) and "not found" in str(error):
        return Code.NOT_FOUND, describe(error)
    if isinstance(error, NspodError):
        return Code.UNKNOWN, describe(error)
    if isinstance(error, OSError):
        return Code.UNKNOWN, f"{error.strerror or error} ({getattr(error, 'filename', '')})"
    return Code.INTERNAL, f"internal error: {type(error).__name__}: {error}"


def answering(method):
    """Wrap a servicer method: NspodError -> its status; anything else -> INTERNAL, logged
    with its traceback (a bug, never a client's input: inputs are checked first)."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as e:  # the server survives any request
            code, message = status_of(e)
            if code == Code.INTERNAL:
                log.exception("%s: %s", method.__name__, message)
            elif code not in (Code.NOT_FOUND,):
                log.info("%s: %s: %s", method.__name__, code.name, message)
            context.abort(code, message)
    return wrapper


def answering_stream(method):
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            yield from method(self, request, context)
        except Exception as e:
            code, message = status_of(e)
            if code == Code.INTERNAL:
                log.exception("%s: %s", method.__name__, message)
            context.abort(code, message)
    return wrapper


def servicer_classes():
    return rpc.RuntimeServiceServicer, rpc.ImageServiceServicer


def serve(runtime, images, address, workers=16):
    """A started grpc server answering `runtime` and `images` on `address` (unix:///path)."""
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", 16 << 20),
                                  ("grpc.max_send_message_length", 16 << 20)])
    rpc.add_RuntimeServiceServicer_to_server(runtime, server)
    rpc.add_ImageServiceServicer_to_server(images, server)
    if not server.add_insecure_port(address):
        raise NspodError(f"--listen: cannot listen on {address}")
    server.start()
    return server


def channel(address):
    return grpc.insecure_channel(address)


def runtime_stub(ch):
    return rpc.RuntimeServiceStub(ch)


def image_stub(ch):
    return rpc.ImageServiceStub(ch)


def rpc_methods(runtime, images):
    """(stub, method name, request class) of every unary RPC (for tests)."""
    out = []
    for stub, service in ((runtime, "RuntimeService"), (images, "ImageService")):
        for m in pb.DESCRIPTOR.services_by_name[service].methods:
            if not m.server_streaming:
                out.append((stub, m.name, getattr(pb, m.input_type.name)))
    return out


def log_to_stderr(verbose=False):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s nspod cri: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)

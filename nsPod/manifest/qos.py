"""A pod's QoS class, computed as Kubernetes computes it (ComputePodQOS in
pkg/apis/core/helper/qos), after the API's defaulting of requests from limits.

Like Kubernetes, it compares pod-wide sums, not container by container, and a
resource counts only when its quantity is above zero. Pod-level `spec.resources`
(the PodLevelResources feature) is not modelled: the input is per container.
"""
QOS_RESOURCES = ("cpu", "memory")


def qos_class(containers):
    """containers: (limits, requests) per container, init and app alike; each a dict
    with optional "memory" (bytes) and "cpu" (millicores). Returns "Guaranteed",
    "Burstable" or "BestEffort"."""
    requests, limits = {}, {}
    guaranteed = True
    for container_limits, container_requests in containers:
        lim = _positive(container_limits)
        # SetDefaults_Pod: a limit given without its request makes the request equal to it
        req = _positive({**_given(container_limits), **_given(container_requests)})
        _add(requests, req)
        _add(limits, lim)
        if not set(QOS_RESOURCES) <= set(lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


def _given(resources):
    return {name: q for name, q in (resources or {}).items() if q is not None}


def _positive(resources):
    return {name: q for name, q in _given(resources).items() if name in QOS_RESOURCES and q > 0}


def _add(total, resources):
    for name, quantity in resources.items():
        total[name] = total.get(name, 0) + quantity

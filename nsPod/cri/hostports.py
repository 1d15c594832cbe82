"""Host ports of CRI sandboxes (PortMapping with a host_port): the monitor's userspace TCP
forwarder (monitor/ports.py: non-blocking, bounded buffers and connections), driven here by
one selector thread of the server. A CRI sandbox's mappings arrive before any container,
while a manifest's hostPorts are the monitor's from its plan; so the server holds these,
binds them before the sandbox is made (a taken port refuses it, nothing made) and publishes
them again for its ready sandboxes when it starts. TCP only: UDP and SCTP are refused."""
import selectors
import threading

from nsPod.errors import InputError
from nsPod.cri.protocol import log

TCP = 0


class HostPorts:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.forwarders = {}        # sandbox id -> [Forwarder]
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="hostports", daemon=True)
        self.thread.start()

    @staticmethod
    def wanted(mappings, field="config.port_mappings"):
        """[(host_ip, host_port, container_port)] of the mappings that publish a port."""
        out = []
        for i, p in enumerate(mappings):
            if not p["host_port"]:
                continue
            if p["protocol"] != TCP:
                raise InputError(f"{field}[{i}].protocol: only TCP host ports are supported")
            out.append((p["host_ip"], p["host_port"], p["container_port"]))
        return out

    @staticmethod
    def bind(wanted):
        """Listening sockets for `wanted`, all or none (PortTaken names the taken one)."""
        from nsPod.monitor import ports
        done = []
        try:
            for host_ip, host_port, _ in wanted:
                done.append(ports.bind(host_port, host_ip))
        except BaseException:
            for s in done:
                s.close()
            raise
        return done

    def publish(self, sandbox_id, listeners, wanted, pod_ip):
        from nsPod.monitor import ports
        with self.lock:
            self.forwarders[sandbox_id] = [
                ports.Forwarder(self.selector, listener, pod_ip, container_port)
                for listener, (_, _, container_port) in zip(listeners, wanted)]

    def unpublish(self, sandbox_id):
        with self.lock:
            for f in self.forwarders.pop(sandbox_id, []):
                f.close()

    def _loop(self):
        while not self.stopping:
            try:
                events = self.selector.select(timeout=1.0)
            except (OSError, ValueError):
                events = []
            with self.lock:
                for key, _ in events:
                    try:
                        key.data.on_ready(key.fileobj)
                    except (KeyError, ValueError, OSError) as e:
                        log.debug("hostport relay: %s", e)   # a socket closed meanwhile

    def stop(self):
        self.stopping = True
        for sandbox_id in list(self.forwarders):
            self.unpublish(sandbox_id)

"""The nspod command: the only module that imports click, prints for users or exits.

Each command parses its arguments, makes one call into the library (nsPod.api.pods) and renders
the result. Library errors (NspodError) become one line per problem on stderr and their exit
code: 2 for bad input, 1 for a failure at run time.
"""
import contextlib
import json
import os
import sys
import time

import click

from nsPod import __version__
from nsPod.api.manifests import read_manifest  # noqa: F401 (the files' reading, without click)
from nsPod.errors import InputError, NspodError, describe

ROOTLESS_COMMANDS = {"validate"}


class Context:
    """Global options, turned into a Config on first use (so that --help needs none)."""

    def __init__(self, **options):
        self.options = options
        self._config = None

    def allowed_unsafe_sysctls(self):
        """Just this option, for `validate` (which needs no other global option to be valid)."""
        if self._config is not None:
            return self._config.allowed_unsafe_sysctls
        from nsPod import config
        return config.unsafe_sysctls(self.options.get("allowed_unsafe_sysctls"))

    @property
    def config(self):
        if self._config is None:
            from nsPod import config
            self._config = config.load(**self.options)
            from nsPod.kernel import paths
            # A state root that is a symlink, another user's, or writable by others is
            # refused before any command reads or writes in it.
            paths.check_root(self._config.root)
            if self._config.trace:
                from nsPod.kernel import syscalls
                syscalls.set_trace(True)
        return self._config


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", metavar="DIR", help="State directory [env NSPOD_ROOT; default /run/nspod].")
@click.option("--cgroup-parent", metavar="PATH",
              help="Where pod cgroups are made [env NSPOD_CGROUP_PARENT; default nspod].")
@click.option("--bridge", metavar="NAME", help="Pod network bridge [env NSPOD_BRIDGE; default nspod0].")
@click.option("--subnet", metavar="CIDR", help="Pod subnet [env NSPOD_SUBNET; default 10.89.0.0/16].")
@click.option("--restart-backoff", metavar="BASE[:MAX]",
              help="Crash-loop backoff [env NSPOD_RESTART_BACKOFF; default 10s:300s].")
@click.option("--allowed-unsafe-sysctls", metavar="LIST",
              help="Sysctls beyond the kubelet's safe set that pods may set: comma list of "
                   "names and patterns such as kernel.msg* "
                   "[env NSPOD_ALLOWED_UNSAFE_SYSCTLS; default none].")
@click.option("-v", "--verbose", is_flag=True, help="Say more.")
@click.option("--trace", is_flag=True, default=None,
              help="Narrate every kernel-level step to stderr [env NSPOD_TRACE=1].")
@click.version_option(__version__, "--version", prog_name="nspod")
@click.pass_context
def cli(ctx, root, cgroup_parent, bridge, subnet, restart_backoff, allowed_unsafe_sysctls,
        verbose, trace):
    """Kubernetes' pod model on one Linux host, straight on the kernel."""
    ctx.obj = Context(root=root, cgroup_parent=cgroup_parent, bridge=bridge, subnet=subnet,
                      restart_backoff=restart_backoff, trace=trace,
                      allowed_unsafe_sysctls=allowed_unsafe_sysctls)
    ctx.obj.verbose = verbose
    if ctx.invoked_subcommand not in ROOTLESS_COMMANDS and "--help" not in sys.argv[1:] \
            and "-h" not in sys.argv[1:]:
        if os.geteuid() != 0:
            raise NspodError("nspod must run as root (it creates namespaces, mounts and cgroups)")
        ctx.obj.config  # bad global options are reported before the command does anything


def warn(message):
    click.echo(f"warning: {message}", err=True)


def load_manifest(file, name=None, allowed_unsafe_sysctls=()):
    return load_manifests([file], name, allowed_unsafe_sysctls)


def load_manifests(files, name=None, allowed_unsafe_sysctls=()):
    from nsPod.api.manifests import load_manifests as load
    pods, warnings = load(files, name, allowed_unsafe_sysctls)
    for w in warnings:
        warn(w)
    return pods


# --- making pods ----------------------------------------------------------------------------

@cli.command()
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@click.option("--name", help="Pod name (overrides metadata.name; one-pod files only).")
@click.option("--wait", is_flag=True, help="Return once every container runs, or the pod ended.")
@pass_context
def run(ctx, files, name, wait):
    """Create and start the pod(s) of Kubernetes manifests (FILE..., a directory, or - for
    stdin); ConfigMaps, Secrets and PersistentVolumeClaims in them serve the pods."""
    from nsPod.api import pods
    for p in load_manifests(files, name, ctx.config.allowed_unsafe_sysctls):
        _pull_images(ctx.config, p)
        for w in pods.run(ctx.config, p):
            warn(w)
        click.echo(p.name)
        if wait:
            _wait_started(ctx.config, p.name)


def _pull_images(config, p):
    """Its images, pulled as each container's imagePullPolicy says, before the pod is made."""
    images = [c.get("image") for key in ("initContainers", "containers")
              for c in ((p.manifest or {}).get("spec") or {}).get(key) or ()
              if isinstance(c, dict)]
    if not any(isinstance(i, str) and i and not i.startswith("/") for i in images):
        return
    from nsPod.kernel import paths
    from nsPod.registry import pull
    paths.check_root(config.root, create=True)
    with _progress(False) as progress, _sigterm_interrupts():
        pull.ensure(config.root, p.manifest, progress)


def _wait_started(config, name):
    from nsPod.api import query
    while True:
        obj = query.inspect(config, name)
        st = obj["status"]
        if st["phase"] == "Failed":
            reason = st.get("message") or _failed_containers(st)
            raise NspodError(f"pod {name} failed: {reason}")
        if st["phase"] == "Succeeded":
            return
        if all("running" in c.get("state", {}) for c in st["containerStatuses"]):
            return
        time.sleep(0.05)


def _failed_containers(st):
    parts = []
    for c in st.get("containerStatuses", []):
        t = c.get("state", {}).get("terminated")
        if t and t.get("exitCode"):
            parts.append(f"container {c['name']} {t.get('reason')} (exit code {t['exitCode']})"
                         + (f": {t['message']}" if t.get("message") else ""))
    return "; ".join(parts) or "see nspod inspect"


@cli.command()
@click.argument("name")
@click.option("--memory", metavar="Q", help="Pod memory limit (e.g. 512Mi).")
@click.option("--volume", "volumes", multiple=True, metavar="V[:SIZE]",
              help="A tmpfs (emptyDir, medium Memory) volume, optionally size-limited.")
@click.option("--share", default="net,ipc,uts", show_default=True,
              help="Namespaces the containers share: net,ipc,uts and optionally pid.")
@click.option("--hostname", help="Pod hostname (default: the pod name).")
@click.option("--network", type=click.Choice(["bridge", "none"]), default=None,
              help="Pod network.")
@pass_context
def create(ctx, name, memory, volumes, share, hostname, network):
    """Create a pod with only its pause process; add containers with `nspod add`."""
    from nsPod.kernel import paths
    from nsPod.api import pods
    from nsPod.manifest import spec
    paths.check_pod_name(name)
    manifest = create_manifest(name, memory, volumes, share, hostname, network)
    p, warnings = spec.pod_from_dict(manifest, allow_no_containers=True)
    for w in warnings:
        warn(w)
    for w in pods.run(ctx.config, p):
        warn(w)
    click.echo(p.name)


def create_manifest(name, memory, volumes, share, hostname, network):
    kinds = {k.strip() for k in share.split(",") if k.strip()}
    unknown = kinds - {"net", "ipc", "uts", "pid"}
    if unknown:
        raise InputError(f"--share: unknown namespace kind(s) {', '.join(sorted(unknown))} "
                         "(choose from net, ipc, uts, pid)")
    if not {"net", "ipc", "uts"} <= kinds:
        raise InputError(f"--share: {share!r}: a pod's containers always share net, ipc and "
                         "uts (Kubernetes' model); add pid to share the pid namespace too")
    spec_doc = {"restartPolicy": "Never", "containers": []}
    if "pid" in kinds:
        spec_doc["shareProcessNamespace"] = True
    if hostname:
        spec_doc["hostname"] = hostname
    if memory:
        spec_doc["resources"] = {"limits": {"memory": memory}}
    volume_docs = []
    from nsPod.kernel import paths
    for i, v in enumerate(volumes):
        vname, _, size = v.partition(":")
        paths.check_volume_name(vname)
        empty_dir = {"medium": "Memory"}
        if size:
            empty_dir["sizeLimit"] = size
        volume_docs.append({"name": vname, "emptyDir": empty_dir})
    if volume_docs:
        spec_doc["volumes"] = volume_docs
    metadata = {"name": name}
    if network:
        metadata["annotations"] = {"nspod.io/network": network}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec_doc}


@cli.command()
@click.argument("pod")
@click.argument("name")
@click.option("--init", is_flag=True, help="An init container: run to completion first.")
@click.option("--memory", metavar="Q", help="Memory limit (e.g. 256Mi).")
@click.option("--mount", "mounts", multiple=True, metavar="V:PATH[:ro]",
              help="Mount pod volume V at PATH (read-only with :ro).")
@click.option("--env", "env", multiple=True, metavar="K=V", help="An environment variable.")
@click.option("--restart", metavar="P", help="restartPolicy of this container.")
@click.option("--workdir", metavar="D", help="Working directory.")
@click.option("--image", metavar="ROOTFS", help="Root filesystem (default: the host's).")
@click.argument("command", metavar="-- CMD [ARGS]...", nargs=-1, required=True)
@pass_context
def add(ctx, pod, name, init, memory, mounts, env, restart, workdir, image, command):
    """Add a container to a running pod and start it: nspod add POD NAME -- CMD ARGS..."""
    from nsPod.kernel import paths
    from nsPod.api import pods
    paths.check_pod_name(pod)
    paths.check_container_name(name)
    if restart and not init:
        raise InputError("--restart: only init containers take a restartPolicy (with --init "
                         "--restart Always: a native sidecar); app containers follow the pod's")
    container = add_container_doc(name, memory, mounts, env, restart, workdir, image, command)
    for w in pods.add(ctx.config, pod, container, init=init):
        warn(w)
    click.echo(name)


def add_container_doc(name, memory, mounts, env, restart, workdir, image, command):
    doc = {"name": name, "command": list(command)}
    if image:
        doc["image"] = image
    if workdir:
        doc["workingDir"] = workdir
    if restart:
        doc["restartPolicy"] = restart
    if memory:
        doc["resources"] = {"limits": {"memory": memory}}
    env_docs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--env: {item!r} is not K=V")
        env_docs.append({"name": key, "value": value})
    if env_docs:
        doc["env"] = env_docs
    mount_docs = []
    for item in mounts:
        parts = item.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or \
                (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise InputError(f"--mount: {item!r} is not V:PATH or V:PATH:ro")
        from nsPod.kernel import paths
        paths.check_volume_name(parts[0])
        mount = {"name": parts[0], "mountPath": parts[1]}
        if len(parts) == 3 and parts[2] == "ro":
            mount["readOnly"] = True
        mount_docs.append(mount)
    if mount_docs:
        doc["volumeMounts"] = mount_docs
    return doc


# --- looking at pods ------------------------------------------------------------------------

@cli.command("ps")
@click.option("-a", "--all", "include_all", is_flag=True, help="Also pods that have ended.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@pass_context
def ps(ctx, include_all, output):
    """List pods: name, phase, ready, restarts, IP, age."""
    from nsPod.api import query
    items = query.list_pods(ctx.config, include_all)
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
        return
    if output == "yaml":
        from nsPod.manifest import spec
        click.echo(spec.dump_yaml({"apiVersion": "v1", "kind": "List", "items": items}), nl=False)
        return
    rows = [("NAME", "PHASE", "READY", "RESTARTS", "IP", "AGE")]
    for item in items:
        st = item["status"]
        statuses = st.get("containerStatuses", [])
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(c.get("restartCount", 0) for c in statuses)
        rows.append((item["metadata"]["name"], st["phase"], f"{ready}/{len(statuses)}",
                     str(restarts), st.get("podIP", "-"), age(st.get("startTime"))))
    click.echo(table(rows))


def table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                     for r in rows)


def age(rfc3339):
    if not rfc3339:
        return "-"
    try:
        import calendar  # only here: `ps` and `image ls` pay for it, no other command
        # The stamp is UTC: timegm, not mktime (local time, an hour off across DST).
        then = calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "-"
    seconds = max(0, int(time.time() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@cli.command()
@click.argument("pod")
@pass_context
def inspect(ctx, pod):
    """The pod as Kubernetes shows it, plus nspod's `runtime` (pids, namespaces, cgroups)."""
    from nsPod.api import query
    click.echo(json.dumps(query.inspect(ctx.config, pod), indent=2))


@cli.command()
@click.argument("pod")
@pass_context
def ns(ctx, pod):
    """Which namespaces pause and each container are in (inode ids)."""
    from nsPod.kernel import namespaces
    from nsPod.api import query
    rows = [("WHO", "PID") + tuple(k.upper() for k in namespaces.KINDS)]
    for who, pid, ids in query.namespace_table(ctx.config, pod):
        rows.append((who, str(pid)) + tuple(_inode(ids.get(k)) for k in namespaces.KINDS))
    click.echo(table(rows))


def _inode(ns_id):
    if not ns_id:
        return "-"
    return ns_id[ns_id.index("[") + 1:-1]


@cli.command()
@click.argument("pod")
@pass_context
def stats(ctx, pod):
    """Memory use against limits, peak and OOM kills, per container and for the pod."""
    from nsPod.api import query
    rows = [("CONTAINER", "MEM USAGE", "LIMIT", "MEM %", "PEAK", "OOM KILLS", "PIDS", "CPU SECONDS")]
    for who, st in query.stats(ctx.config, pod):
        mem, pids, cpu = st["memory"], st["pids"], st["cpu"]
        usage, limit = mem.get("usage"), mem.get("limit")
        percent = f"{100 * usage / limit:.1f}%" if usage is not None and limit else "-"
        rows.append((who, _size(usage), _size(limit) if limit else "max", percent,
                     _size(mem.get("peak")), str(mem.get("oomKills", 0)),
                     "-" if pids.get("current") is None else str(pids["current"]),
                     "-" if cpu.get("usageUsec") is None else f"{cpu['usageUsec'] / 1e6:.2f}"))
    click.echo(table(rows))


def _size(value):
    from nsPod.api.admission import human_bytes
    return "-" if value is None else human_bytes(value)


@cli.command()
@click.argument("pod")
@pass_context
def top(ctx, pod):
    """The processes of each container."""
    from nsPod.api import query
    rows = [("CONTAINER", "PID", "USER", "COMMAND")]
    for who, pid, user, cmd in query.top(ctx.config, pod):
        rows.append((who, str(pid), user, cmd))
    click.echo(table(rows))


@cli.command()
@click.argument("pod")
@click.argument("container", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the container writes.")
@click.option("--tail", type=int, default=-1, metavar="N", help="Only the last N lines.")
@click.option("--previous", is_flag=True, help="The run before the last restart.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its RFC3339 time.")
@pass_context
def logs(ctx, pod, container, follow, tail, previous, timestamps):
    """A container's output (stdout and stderr, interleaved as written)."""
    from nsPod.store import logs as logfiles
    from nsPod.api import query
    if tail < -1:
        raise InputError(f"--tail: {tail} is negative")
    _, name, path = query.log_path(ctx.config, pod, container, previous)
    records = logfiles.read_records(path)
    if tail >= 0:
        records = records[len(records) - tail:] if tail else []
    out = click.get_text_stream("stdout")
    for stamp, _, text in records:
        out.write(f"{stamp} {text}\n" if timestamps else f"{text}\n")
    out.flush()
    if follow and not previous:
        _follow(ctx.config, pod, name, path, timestamps, out)


def _follow(config, pod, container, path, timestamps, out):
    from nsPod.store import logs as logfiles
    offset = os.path.getsize(path) if os.path.exists(path) else 0
    buffered = ""
    while True:
        running = pods_running(config, pod, container)
        try:
            with open(path, errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
        except FileNotFoundError:
            chunk = ""
        buffered += chunk
        *lines, buffered = buffered.split("\n")
        for line in lines:
            rec = logfiles.parse_line(line)
            if rec:
                end = "" if rec[2] == "P" else "\n"
                out.write(f"{rec[0]} {rec[3]}{end}" if timestamps else f"{rec[3]}{end}")
        out.flush()
        if not running and not chunk:
            return
        time.sleep(0.1)


def pods_running(config, pod, container):
    from nsPod.api import query
    return query.container_running(config, pod, container)


# --- acting on pods -------------------------------------------------------------------------

@cli.command("exec")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="The command uses this terminal.")
@click.option("-c", "--container", help="Container name (default: the first).")
@click.argument("pod")
@click.argument("command", metavar="-- CMD [ARGS]...", nargs=-1, required=True)
@pass_context
def exec_(ctx, interactive, tty, container, pod, command):
    """Run a command in a container's namespaces: nspod exec POD [-c C] -- CMD..."""
    from nsPod.api import enter
    run_attached(tty, lambda: enter.exec_in(ctx.config, pod, container, list(command),
                                           interactive or tty))


def run_attached(tty, run):
    """exec and debug: the command's own exit code, or 126/127 with a line when it cannot run."""
    from nsPod.api import enter
    if tty and not sys.stdin.isatty():
        raise InputError("-t: standard input is not a terminal")
    try:
        code = run()
    except enter.ExecFailed as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(code)


@cli.command()
@click.argument("pod")
@click.argument("container")
@pass_context
def restart(ctx, pod, container):
    """Restart one container of a running pod; nothing else in the pod changes."""
    from nsPod.api import pods
    click.echo(pods.restart(ctx.config, pod, container))


@cli.command()
@click.argument("file")
@pass_context
def apply(ctx, file):
    """Change a running pod to match FILE: only containers whose spec changed restart."""
    from nsPod.api import pods, volumes
    # Sysctls are admitted once, at run (the kubelet admits a pod once); apply refuses any
    # change to them, so a pod run with --allowed-unsafe-sysctls is applied without it.
    for p in load_manifest(file, allowed_unsafe_sysctls=None):
        changes = pods.apply(ctx.config, p)
        refreshed = volumes.refresh_files(ctx.config, p)
        for name in refreshed:
            click.echo(f"pod {p.name}: volume {name} updated")
        if not changes and not refreshed:
            click.echo(f"pod {p.name}: unchanged")
        for name, fields in changes:
            click.echo(f"pod {p.name}: container {name} restarted ({', '.join(fields)} changed)")


@cli.command()
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="The command uses this terminal.")
@click.option("--target", metavar="C", help="Share this container's pid namespace.")
@click.argument("pod")
@click.argument("command", metavar="-- CMD [ARGS]...", nargs=-1, required=True)
@pass_context
def debug(ctx, interactive, tty, target, pod, command):
    """An ephemeral debug container in the pod: nspod debug POD [--target C] -- CMD..."""
    from nsPod.api import enter
    run_attached(tty, lambda: enter.debug(ctx.config, pod, target, list(command),
                                         interactive or tty))


# A grace period in seconds: up to 68 years, which every timer and socket timeout on the way
# (the monitor's loop, the wait for its answer) can hold.
GRACE_SECONDS = click.IntRange(min=0, max=2**31 - 1)


@cli.command()
@click.argument("pod")
@click.option("--timeout", type=GRACE_SECONDS, metavar="S",
              help="Seconds between SIGTERM and SIGKILL (default: the pod's "
                   "terminationGracePeriodSeconds).")
@pass_context
def stop(ctx, pod, timeout):
    """Stop a pod: SIGTERM, grace period, SIGKILL. State and logs are kept."""
    from nsPod.api import pods
    pods.stop(ctx.config, pod, timeout)
    click.echo(pod)


@cli.command()
@click.argument("pods_", metavar="POD...", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Stop running pods first; unknown pods are fine.")
@click.option("--timeout", type=GRACE_SECONDS, metavar="S", help="Grace period for -f.")
@pass_context
def rm(ctx, pods_, force, timeout):
    """Remove pods; nothing of them remains on the host."""
    from nsPod.api import pods
    removed, errors = pods.remove(ctx.config, pods_, force, timeout)
    for name in removed:
        click.echo(name)
    if errors:
        for e in errors[:-1]:
            click.echo(f"error: {e}", err=True)
        raise errors[-1]


@cli.command()
@pass_context
def gc(ctx):
    """Remove what crashed or killed nspod processes left behind."""
    from nsPod.api import pods
    for line in pods.gc(ctx.config):
        click.echo(line)


@cli.command()
@click.argument("file")
@pass_context
def validate(ctx, file):
    """Parse and check a manifest; touches nothing."""
    pods = load_manifest(file, allowed_unsafe_sysctls=ctx.allowed_unsafe_sysctls())
    click.echo(f"ok: {len(pods)} pod{'s' if len(pods) != 1 else ''} "
               f"({', '.join(p.name for p in pods)})")


@cli.command()
@click.argument("pod")
@pass_context
def generate(ctx, pod):
    """The pod as a Kubernetes Pod manifest that `kubectl apply` accepts."""
    from nsPod.api import query
    from nsPod.manifest import spec
    _, doc, _ = query.load(ctx.config, pod)
    click.echo(spec.dump_yaml(spec.clean_manifest(doc["manifest"])), nl=False)


# --- volumes (persistentVolumeClaims) ------------------------------------------------------

@cli.group()
def volume():
    """The named volumes persistentVolumeClaims map to (they outlive their pods)."""


@volume.command("ls")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@pass_context
def volume_ls(ctx, output):
    """List the claims' volumes: name, size, pods using it."""
    from nsPod.api import volumes
    items = volumes.list_volumes(ctx.config)
    if output == "json":
        click.echo(json.dumps(items, indent=2))
        return
    rows = [("NAME", "SIZE", "PODS")]
    rows += [(i["name"], _size(i["size"]), ",".join(i["pods"]) or "-") for i in items]
    click.echo(table(rows))


@volume.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_context
def volume_rm(ctx, names):
    """Remove claims' volumes and their data (refused while a pod uses one)."""
    from nsPod.api import volumes
    for name in names:
        volumes.remove_volume(ctx.config, name)
        click.echo(name)


# --- images ---------------------------------------------------------------------------------

@cli.group()
def image():
    """nspod's local image store: root filesystems for containers' `image`."""


@image.command("import")
@click.argument("name")
@click.argument("source", metavar="FILE|DIR")
@pass_context
def image_import(ctx, name, source):
    """Store a root filesystem as NAME[:TAG]: a tarball (docker export), a directory, or an
    OCI image layout (its Entrypoint, Cmd, Env, WorkingDir and User are kept)."""
    from nsPod.store import images
    from nsPod.kernel import paths
    images.reference(name)  # bad input first: it must leave nothing, not even a root
    # The root made here, as by `run`: 0700, checked and recorded.
    paths.check_root(ctx.config.root, create=True)
    click.echo(images.import_image(ctx.config, name, source)["name"])


@image.command("ls")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@pass_context
def image_ls(ctx, output):
    """List the stored images."""
    from nsPod.store import images
    items = images.list_images(ctx.config)
    if output == "json":
        click.echo(json.dumps(items, indent=2))
        return
    rows = [("NAME", "DIGEST", "FORMAT", "SIZE", "CREATED", "COMMAND")]
    for item in items:
        command = (item.get("entrypoint") or []) + (item.get("cmd") or [])
        digest = item.get("digest") or "-"
        rows.append((item["name"], digest[:19], item.get("format", "-"), _size(item.get("size")),
                     age(item.get("created")), " ".join(command) or "-"))
    click.echo(table(rows))


@image.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the image's name.")
@click.argument("ref", metavar="REF")
@pass_context
def image_pull(ctx, quiet, ref):
    """Pull an image by reference (nginx:1.25, registry.k8s.io/pause:3.9, name@sha256:...)
    from its registry, through the mirrors of registries.conf."""
    from nsPod.kernel import paths
    from nsPod.manifest import image_reference as reference
    from nsPod.registry import pull
    try:
        reference.parse(ref)
    except InputError as e:
        raise InputError(f"REF: {ref!r}: {e}") from None
    paths.check_root(ctx.config.root, create=True)
    with _progress(quiet) as progress, _sigterm_interrupts():
        stored, _ = pull.pull(ctx.config.root, ref, progress, explicit=True)
    click.echo(stored["name"])


@image.command("prune")
@pass_context
def image_prune(ctx):
    """Remove every image no pod uses, and the layers and blobs no image uses."""
    from nsPod.store import images
    removed, _ = images.prune(ctx.config)
    for name in removed:
        click.echo(name)


class _Progress:
    """Bytes per layer on a terminal, one line rewritten in place; nothing otherwise."""

    def __init__(self):
        self.last = None

    def __call__(self, digest, done, total):
        line = f"{digest[7:19]}: {_size(done)}" + (f" / {_size(total)}" if total else "")
        if done == total or self.last is None or time.monotonic() - self.last > 0.1:
            self.last = time.monotonic()
            click.echo(f"\r{line}\033[K" + ("\n" if done == total else ""), nl=False, err=True)


@contextlib.contextmanager
def _progress(quiet):
    yield None if quiet or not sys.stderr.isatty() else _Progress()


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM ends a pull as ^C does: its work is removed on the way out."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@image.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_context
def image_rm(ctx, names):
    """Remove images; one a pod under this root uses is refused."""
    from nsPod.store import images
    for name in names:
        click.echo(images.remove(ctx.config, name))


def main(argv=None):
    """Entry point: the exit code of one command, and a fast exit.

    os._exit once stdout and stderr are flushed: tearing down the interpreter (module
    finalizers, garbage collection) costs 30-45 ms a command and does nothing for nspod, whose
    files are all written and closed by then.
    """
    try:
        code = run_command(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


def run_command(argv):
    """Every NspodError ends as a message and its exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="nspod", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        # One line per problem, as for every other bad input; --help has the usage.
        where = f" (see '{e.ctx.command_path} --help')" if e.ctx and e.ctx.parent else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except NspodError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            click.echo(f"error: {line}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except OSError as e:
        click.echo(f"error: {describe(e)}", err=True)
        sys.exit(1)
    except Exception as e:  # a bug: say so in one line; the traceback only when asked
        if os.environ.get("NSPOD_DEBUG") == "1":
            raise
        click.echo(f"error: internal error: {type(e).__name__}: {e} "
                   "(NSPOD_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)

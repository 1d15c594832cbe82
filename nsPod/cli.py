"""The nspod command: the only module that imports click, prints for users or exits.

Each command parses its arguments, makes one call into the library (nsPod.api) and echoes
what api/render.py makes of the result. Library errors (NspodError) become one line per
problem on stderr and their exit code (errors.ExitCode): 2 for bad input, 1 for a failure at
run time.
"""
import json
import os
import sys

import click

from nsPod import __version__
from nsPod.errors import ExitCode, InputError, NspodError, SpecError, describe
from nsPod.api import render

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
            from nsPod.api import session
            self._config = session.open_config(self.options)
        return self._config


pass_context = click.make_pass_decorator(Context)


class Group(click.Group):
    def parse_args(self, ctx, args):
        from nsPod.api.session import trace_format_option
        return super().parse_args(ctx, trace_format_option(args, {
            o for p in self.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts}))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
              help="Narrate every kernel-level step to stderr; --trace=json: one JSON object "
                   "per step [env NSPOD_TRACE=1 or json].")
@click.option("--trace-format", hidden=True)
@click.version_option(__version__, "--version", prog_name="nspod")
@click.pass_context
def cli(ctx, root, cgroup_parent, bridge, subnet, restart_backoff, allowed_unsafe_sysctls,
        verbose, trace, trace_format):
    """Kubernetes' pod model on one Linux host, straight on the kernel."""
    if trace_format is not None:
        trace = trace_format
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


def load_manifests(files, name=None, allowed_unsafe_sysctls=(), sources_required=True):
    """The pods of FILE... (api.manifests reads them); warnings to stderr, even with errors."""
    from nsPod.api import manifests
    try:
        pods, warnings = manifests.load_manifests(files, name, allowed_unsafe_sysctls,
                                                  sources_required)
    except SpecError as e:
        for w in getattr(e, "warnings", ()):
            warn(w)
        raise
    for w in warnings:
        warn(w)
    return pods


# --- making pods ----------------------------------------------------------------------------

@cli.command()
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@click.option("--name", help="Pod name (overrides metadata.name; one-pod files only).")
@click.option("--wait", is_flag=True, help="Return once every container runs, or the pod ended.")
@click.option("-i", "--stdin", "interactive", is_flag=True,
              help="Then attach -i to the first container with stdin: true (one pod).")
@click.option("-t", "--tty", is_flag=True, help="Then attach -t to it (it needs tty: true).")
@pass_context
def run(ctx, files, name, wait, interactive, tty):
    """Create and start the pod(s) of Kubernetes manifests (FILE..., a directory, or - for
    stdin); ConfigMaps, Secrets and PersistentVolumeClaims in them serve the pods."""
    from nsPod.api import attach as attaching, pods, pulls
    if (interactive or tty) and "-" in files:
        raise InputError("-i/-t: the manifest cannot come from stdin too")
    if tty and not sys.stdin.isatty():
        raise InputError("-t: standard input is not a terminal")
    made = load_manifests(files, name, ctx.config.allowed_unsafe_sysctls)
    target = attaching.run_target(made, tty) if interactive or tty else None
    for p in made:
        pulls.pull_for_pod(ctx.config, p.manifest, _progress(False))
        for w in pods.run(ctx.config, p):
            warn(w)
        click.echo(p.name)
        if wait or target:
            from nsPod.api import query
            query.wait_started(ctx.config, p.name)
    if target:
        _attach(ctx, interactive, tty, target, made[0].name)


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
    from nsPod.api import manifests, pods
    p, warnings = manifests.pod_for_create(name, memory, volumes, share, hostname, network)
    for w in warnings:
        warn(w)
    for w in pods.run(ctx.config, p):
        warn(w)
    click.echo(p.name)


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
    from nsPod.api import change, manifests
    container = manifests.container_for_add(pod, name, init, memory, mounts, env, restart,
                                            workdir, image, command)
    for w in change.add(ctx.config, pod, container, init=init):
        warn(w)
    click.echo(name)


# --- looking at pods ------------------------------------------------------------------------

@cli.command("ps")
@click.option("-a", "--all", "include_all", is_flag=True, help="Also pods that have ended.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@pass_context
def ps(ctx, include_all, output):
    """List pods: name, phase, ready, restarts, IP, age."""
    from nsPod.api import query
    items = query.list_pods(ctx.config, include_all, rows_only=output == "table")
    click.echo(render.pods(items, output), nl=output != "yaml")


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
    from nsPod.api import query
    click.echo(render.namespaces_table(query.namespace_table(ctx.config, pod)))


@cli.command()
@click.argument("pod")
@click.option("-o", "--output", type=click.Choice(["tree", "json"]), default="tree")
@pass_context
def explain(ctx, pod, output):
    """The pod as the kernel has it: pause's namespaces, each container's (shared or its
    own), mounts, cgroup limits, the veth to the bridge and the pod IP."""
    from nsPod.api import explain as pictures
    picture = pictures.explain(ctx.config, pod)
    click.echo(json.dumps(picture, indent=2) if output == "json" else pictures.render_tree(picture),
               nl=output == "json")


@cli.command()
@click.argument("pod")
@pass_context
def stats(ctx, pod):
    """Memory use against limits, peak and OOM kills, per container and for the pod."""
    from nsPod.api import query
    click.echo(render.stats_table(query.stats(ctx.config, pod)))


@cli.command()
@click.argument("pod")
@pass_context
def top(ctx, pod):
    """The processes of each container."""
    from nsPod.api import query
    click.echo(render.top_table(query.top(ctx.config, pod)))


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
    from nsPod.api import query
    name, path, text = query.log_text(ctx.config, pod, container, previous, tail, timestamps)
    out = click.get_text_stream("stdout")
    out.write(text)
    out.flush()
    if follow and not previous:
        for chunk in query.follow_log(ctx.config, pod, name, path, timestamps):
            out.write(chunk)
            out.flush()


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
@click.option("-i", "--stdin", "interactive", is_flag=True,
              help="Pass stdin to the container (it needs stdin: true); end of input detaches.")
@click.option("-t", "--tty", is_flag=True, help="This terminal, raw, is the container's tty.")
@click.option("-c", "--container", help="Container name (default: the first).")
@click.argument("pod")
@pass_context
def attach(ctx, interactive, tty, container, pod):
    """Attach to a running container's stdin, tty and output (kubectl attach)."""
    _attach(ctx, interactive, tty, container, pod)


def _attach(ctx, interactive, tty, container, pod):
    from nsPod.api import attach as attaching
    if tty and not sys.stdin.isatty():
        raise InputError("-t: standard input is not a terminal")
    attachment = attaching.open_attachment(ctx.config, pod, container, interactive, tty)
    sys.exit(attaching.attach_loop(attachment, interactive, raw_terminal=tty))


@cli.command()
@click.argument("pod")
@click.argument("container")
@pass_context
def restart(ctx, pod, container):
    """Restart one container of a running pod; nothing else in the pod changes."""
    from nsPod.api import change
    click.echo(change.restart(ctx.config, pod, container))


@cli.command()
@click.argument("file")
@pass_context
def apply(ctx, file):
    """Change a running pod to match FILE: only containers whose spec changed restart."""
    from nsPod.api import change
    # Sysctls were admitted at run (the kubelet admits once) and apply refuses their change.
    for p in load_manifests([file], allowed_unsafe_sysctls=None):
        click.echo(render.applied(p.name, *change.apply_from_file(ctx.config, p, file)))


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
    echo_removed(*pods.remove(ctx.config, pods_, force, timeout))


def echo_removed(removed, errors):
    """rm and delete: the names removed, then an error line each (the last one raised)."""
    for name in removed:
        click.echo(name)
    for e in errors[:-1]:
        click.echo(f"error: {e}", err=True)
    if errors:
        raise errors[-1]


@cli.command()
@click.option("-f", "--filename", "file", required=True, metavar="FILE",
              help="The manifest the pods were made from (FILE, or - for stdin).")
@click.option("--timeout", type=GRACE_SECONDS, metavar="S", help="Grace period for running pods.")
@pass_context
def delete(ctx, file, timeout):
    """Stop and remove every pod FILE made: its Pods, and its workloads' pods (by owner)."""
    from nsPod.api import pods, workloads
    echo_removed(*pods.remove(ctx.config, workloads.made_by_file(ctx.config, file), True,
                              timeout))


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
    click.echo(render.validated(load_manifests(
        [file], allowed_unsafe_sysctls=ctx.allowed_unsafe_sysctls(), sources_required=False)))


@cli.command()
@click.argument("pod")
@pass_context
def generate(ctx, pod):
    """The pod as a Kubernetes Pod manifest that `kubectl apply` accepts."""
    from nsPod.api import query
    click.echo(query.manifest_yaml(ctx.config, pod), nl=False)


# --- volumes (persistentVolumeClaims), then images -----------------------------------------

@cli.group()
def volume():
    """The named volumes persistentVolumeClaims map to (they outlive their pods)."""


@volume.command("ls")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@pass_context
def volume_ls(ctx, output):
    """List the claims' volumes: name, size, pods using it."""
    from nsPod.api import volumes
    click.echo(render.volumes(volumes.list_volumes(ctx.config), output))


@volume.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_context
def volume_rm(ctx, names):
    """Remove claims' volumes and their data (refused while a pod uses one)."""
    from nsPod.api import volumes
    for name in names:
        volumes.remove_volume(ctx.config, name)
        click.echo(name)


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
    from nsPod.api import pulls
    click.echo(pulls.import_image(ctx.config, name, source)["name"])


@image.command("ls")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@pass_context
def image_ls(ctx, output):
    """List the stored images."""
    from nsPod.store import images
    click.echo(render.images(images.list_images(ctx.config), output))


@image.command("pull")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the image's name.")
@click.argument("ref", metavar="REF")
@pass_context
def image_pull(ctx, quiet, ref):
    """Pull an image by reference (nginx:1.25, registry.k8s.io/pause:3.9, name@sha256:...)
    from its registry, through the mirrors of registries.conf."""
    from nsPod.api import pulls
    stored = pulls.pull_image(ctx.config, ref, _progress(quiet))
    click.echo(stored["name"])


@image.command("prune")
@pass_context
def image_prune(ctx):
    """Remove every image no pod uses, and the layers and blobs no image uses."""
    from nsPod.store import images
    removed, _ = images.prune(ctx.config)
    for name in removed:
        click.echo(name)


def _progress(quiet):
    """Bytes per layer on a terminal, one line rewritten in place; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        return None
    return render.Progress(lambda text: click.echo(text, nl=False, err=True))


@image.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_context
def image_rm(ctx, names):
    """Remove images; one a pod under this root uses is refused."""
    from nsPod.store import images
    for name in names:
        click.echo(images.remove(ctx.config, name))


# --- teaching labs (nsPod/labs/) --------------------------------------------------------------

@cli.group()
def lab():
    """Teaching labs: the pod's ideas, run with nspod and checked against the kernel."""


@lab.command("ls")
def lab_ls():
    """List the labs."""
    from nsPod import labs
    click.echo(render.table([("#", "NAME", "TITLE")] + [(str(x.number), x.name, x.title)
                                                       for x in labs.all_labs()]))


@lab.command("explain")
@click.argument("name")
def lab_explain(name):
    """A lab's text: what you will see, why it matters, what is checked."""
    from nsPod import labs
    found = labs.find(name)
    click.echo(f"Lab {found.number}: {found.title}\n\n{found.text.strip()}\n")
    click.echo(f"Kernel interfaces: {', '.join(found.interfaces)}\nChecked:")
    for what in found.observations.values():
        click.echo(f"  - {what}")


@lab.command("run")
@click.argument("name")
@click.option("--check", is_flag=True, help="No pauses; one ok/FAIL line per observation.")
@pass_context
def lab_run(ctx, name, check):
    """Run a lab (its pods get unique names in your state root and are removed at the end);
    exit 1 when an observation failed."""
    from nsPod import labs
    from nsPod.labs import runner
    pause = None if check or not sys.stdin.isatty() else \
        (lambda: click.pause("   [press a key]"))
    ok = runner.run_lab(labs.find(name), labs.global_args(ctx.options), click.echo, check, pause)
    sys.exit(ExitCode.OK if ok else ExitCode.FAILURE)


# --- the CRI server (issue 13) ----------------------------------------------------------------

@cli.command("cri")
@click.option("--listen", default="unix:///run/nspod/cri.sock", show_default=True,
              metavar="unix:///PATH", help="The CRI socket (made 0600: root only).")
@click.option("--stream-address", default="127.0.0.1", show_default=True, metavar="IP",
              help="Address of the streaming server (exec, attach, port-forward URLs).")
@pass_context
def cri(ctx, listen, stream_address):
    """Serve Kubernetes' CRI v1 (RuntimeService, ImageService) in the foreground; logs to
    stderr; SIGTERM or ^C ends it (pods keep running)."""
    from nsPod.cri import server
    server.serve_forever(ctx.config, listen, stream_address, verbose=ctx.verbose)


def main(argv=None):
    """Entry point: the exit code of one command, and a fast exit.

    os._exit once stdout and stderr are flushed: tearing down the interpreter (module
    finalizers, garbage collection) costs 30-45 ms a command and does nothing for nspod, whose
    files are all written and closed by then.
    """
    try:
        code = run_command(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (ExitCode.OK if e.code is None
                                                             else ExitCode.FAILURE)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or ExitCode.FAILURE
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
        sys.exit(ExitCode.INPUT)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except NspodError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            click.echo(f"error: {line}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(ExitCode.FAILURE)
    except OSError as e:
        click.echo(f"error: {describe(e)}", err=True)
        sys.exit(ExitCode.FAILURE)
    except Exception as e:  # a bug: say so in one line; the traceback only when asked
        if os.environ.get("NSPOD_DEBUG") == "1":
            raise
        click.echo(f"error: internal error: {type(e).__name__}: {e} "
                   "(NSPOD_DEBUG=1 shows the traceback)", err=True)
        sys.exit(ExitCode.FAILURE)
    sys.exit(ExitCode.OK)

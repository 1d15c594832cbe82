"""ImageService on nspod's image store (the one `nspod image` uses): an image's CRI id is
`sha256:<manifest digest>` for a pulled image, `sha256:<sha256 of its name>` for an imported
one; repo tags are its store name, repo digests `<repository>@<digest>`."""
import base64
import contextlib
import hashlib
import json
import os
import tempfile
import time

from nsPod.errors import InputError
from nsPod.cri import checks
from nsPod.cri.protocol import CriError, Code, NotFound, pb


def image_id(config):
    manifest = config.get("manifest") or config.get("digest")
    if manifest:
        return manifest if manifest.startswith("sha256:") else f"sha256:{manifest}"
    return "sha256:" + hashlib.sha256(config["name"].encode()).hexdigest()


def _stored(root):
    from nsPod.store import images
    return images.configs(root)


def find(root, text, field):
    """(store name, config) of the image `text` names (a reference, an id or an id's
    prefix of at least 12 hex digits), or None."""
    found = find_all(root, text, field)
    return found[0] if found else None


def find_all(root, text, field):
    """Every (store name, config) of that image: a name is one, an id all its names."""
    from nsPod.store import images
    checks.text(text, field, 4096, allow_empty=False)
    stored = _stored(root)
    hexpart = text.removeprefix("sha256:")
    if len(hexpart) >= 12 and all(c in "0123456789abcdef" for c in hexpart):
        by_id = [(n, c) for n, c in sorted(stored.items())
                 if image_id(c).removeprefix("sha256:").startswith(hexpart)]
        if by_id or text.startswith("sha256:"):
            return by_id
    if "@sha256:" in text:
        repo, _, digest = text.partition("@")
        repo_name = images.reference(repo, field).rsplit(":", 1)[0]
        return [(n, c) for n, c in sorted(stored.items())
                if c.get("digest") == digest and n.rsplit(":", 1)[0] == repo_name][:1]
    name = images.reference(text, field)
    return [(name, stored[name])] if name in stored else []


def resolve(root, text, field):
    """CreateContainer's image: the store name to plan it with ("" is the host's root)."""
    if not text:
        return ""
    found = find(root, text, field)
    if found is None:
        raise NotFound(f"{field}: image {text!r} is not in nspod's image store (pull it)")
    return found[0]


def _full(name):
    from nsPod.manifest import image_reference as reference
    try:
        return str(reference.parse(name))
    except InputError:
        return name


def image_message(names, config):
    """One CRI image: every store name with this id is one of its repo tags."""
    tags, digests = [], []
    for name in names:
        full = _full(name)
        if "@" in full:
            digests.append(full)
            continue
        tags.append(full)
        if config.get("digest"):
            digests.append(f"{full.rsplit(':', 1)[0]}@{config['digest']}")
    user = (config.get("user") or "").partition(":")[0]
    uid = None
    username = ""
    if user.isdigit():
        uid = pb.Int64Value(value=int(user))
    elif user:
        username = user
    return pb.Image(id=image_id(config), repo_tags=tags, repo_digests=sorted(set(digests)),
                    size=int(config.get("size") or 0), uid=uid, username=username,
                    spec=pb.ImageSpec(image=image_id(config)))


def _by_id(root):
    groups = {}
    for name, config in sorted(_stored(root).items()):
        groups.setdefault(image_id(config), ([], config))[0].append(name)
    return groups


def list_images(root, flt):
    wanted = None
    if flt is not None and flt.image.image:
        found = find(root, flt.image.image, "filter.image.image")
        if found is None:
            return []
        wanted = image_id(found[1])
    return [image_message(names, config) for iid, (names, config) in _by_id(root).items()
            if wanted is None or iid == wanted]


def status(root, spec, verbose):
    found = find(root, spec.image, "image.image")
    if found is None:
        return pb.ImageStatusResponse()
    names, config = _by_id(root)[image_id(found[1])]
    info = {"info": json.dumps(found[1])} if verbose else {}
    return pb.ImageStatusResponse(image=image_message(names, config), info=info)


@contextlib.contextmanager
def _auth_file(auth, reference):
    """PullImage's AuthConfig as a one-entry credentials file for the registry client."""
    if not (auth.username or auth.password or auth.auth or auth.identity_token
            or auth.registry_token):
        yield None
        return
    if auth.identity_token or auth.registry_token:
        raise CriError("auth: identity and registry tokens are not supported (use "
                       "username and password)", Code.UNIMPLEMENTED)
    for field in ("username", "password", "auth", "server_address"):
        checks.text(getattr(auth, field), f"auth.{field}", 4096)
    token = auth.auth or base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
    server = auth.server_address or reference.domain
    with tempfile.TemporaryDirectory(prefix="nspod-cri-auth-") as d:
        path = os.path.join(d, "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": {server: {"auth": token}}}, f)
        yield [path]


def pull(root, spec, auth):
    """PullImage: the image's id once it is in the store."""
    from nsPod.kernel import paths
    from nsPod.manifest import image_reference as reference
    from nsPod.registry import pull as registry
    text = checks.text(spec.image, "image.image", 4096, allow_empty=False)
    try:
        ref = reference.parse(text)
    except InputError as e:
        raise InputError(f"image.image: {text!r}: {e}") from None
    paths.check_root(root, create=True)
    with _auth_file(auth, ref) as files:
        stored, _ = registry.pull(root, text, None, policy="Always", auth_files=files,
                                  explicit=True)
    return image_id(stored)


def remove(cfg, spec):
    """RemoveImage: by name, that name; by id, every name of the image."""
    from nsPod.store import images
    for name, _ in find_all(cfg.root, spec.image, "image.image"):
        images.remove(cfg, name)


def fs_info(root):
    from nsPod.store import images
    store = images.store_dir(root)
    used = inodes = 0
    for directory, dirs, files in os.walk(store):
        for n in dirs + files:
            try:
                st = os.lstat(os.path.join(directory, n))
            except OSError:
                continue
            inodes += 1
            if st.st_nlink <= 1 or not os.path.isfile(os.path.join(directory, n)):
                used += st.st_blocks * 512
            else:
                used += st.st_blocks * 512 // st.st_nlink
    usage = pb.FilesystemUsage(timestamp=time.time_ns(),
                               fs_id=pb.FilesystemIdentifier(mountpoint=store),
                               used_bytes=pb.UInt64Value(value=used),
                               inodes_used=pb.UInt64Value(value=inodes))
    return pb.ImageFsInfoResponse(image_filesystems=[usage], container_filesystems=[usage])


"""`nspod image pull`: a reference, resolved through registries.conf, into the image store.

The order of things, each step checked before the next:
  1. the reference is parsed and normalised (reference.py; a bad one is InputError, exit 2);
  2. registries.conf gives the endpoints: its mirrors, then the registry (conf.py);
  3. the manifest is fetched and its digest checked (against the reference's digest, and the
     registry's Docker-Content-Digest); an index or manifest list is resolved to the
     linux/<this machine's architecture> manifest, fetched by digest and checked in turn;
  4. if the store already has this image under this name at this digest, nothing else is
     transferred; otherwise the config blob, and each layer not already unpacked, are
     streamed into a temporary file while their digest and size are computed, refused on a
     mismatch, then unpacked (a layer once, into .layers/, shared by every image with it);
  5. the root filesystem is made from the layers by hard links (store.py), and the image's
     name is written last, atomically: an interrupted pull (SIGINT, SIGTERM, a dead registry)
     leaves no image and no partial layer, only its work directory, which it removes itself
     or, if it was killed, the next pull or gc does.
"""
import hashlib
import json
import os
import shutil
import tarfile
import uuid
import zlib

from nsPod.store import images, layers as store, state, unpack_limits, zstd_layers
from nsPod.errors import InputError, describe
from nsPod.manifest import image_reference as reference
from nsPod.registry import auth, client, conf
from nsPod.registry.manifests import (  # noqa: F401 (the pull's vocabulary, tests use it)
    _GZIP_LAYERS, _TAR_LAYERS, PullError, _descriptor_digest, host_platform,
    parse_manifest, select_platform, sha256, verify_manifest)
from nsPod.registry.client import RegistryError

CHUNK = 1 << 16
POLICIES = ("Always", "IfNotPresent", "Never")


def api_host(host):
    """Where a registry's API answers: docker.io's is registry-1.docker.io (as containers/image
    and docker resolve it); every other host serves its own."""
    return "registry-1.docker.io" if host == reference.DEFAULT_DOMAIN else host


# --- the pull -----------------------------------------------------------------------------------

class Pull:
    """One pull; `progress(digest, done, total)` is called as layer bytes arrive."""

    def __init__(self, root, text, progress=None, registries=None, auth_files=None):
        self.ref = reference.parse(text)
        self.text = text
        self.name = self.ref.familiar()
        self.root = root
        self.store = images.store_dir(root)
        self.progress = progress or (lambda digest, done, total: None)
        self._conf = registries       # read when a registry is asked, not for a stored image
        self.auth_files = auth_files
        self.transferred = 0
        self.work = None
        self.source = self.ref

    def run(self, policy="Always", explicit=False):
        """The stored image's config (images.configs' shape); pulls as `policy` says.
        `explicit` (`nspod image pull`): a name an import holds is refused, not kept."""
        if policy not in POLICIES:
            raise InputError(f"imagePullPolicy: {policy!r}: must be one of {', '.join(POLICIES)}")
        self.limits = unpack_limits.limits()     # a bad knob is bad input before any transfer
        if self.ref.digest and not self.ref.digest.startswith("sha256:"):
            raise PullError(f"pull {self.ref}: only sha256 digests are supported")
        present = self._stored()
        if explicit and present is not None and not present.get("digest"):
            raise PullError(f"image {self.name} exists as an imported image (remove it "
                            f"first: nspod image rm {self.name})")
        if present is not None and (policy != "Always" or self.ref.digest
                                    or not present.get("digest")):
            # By digest the content cannot have changed; an imported image has no registry.
            return present
        if policy == "Never":
            raise PullError(f"image {self.name} is not in nspod's image store and its "
                            "imagePullPolicy is Never (pull it: nspod image pull "
                            f"{self.name}, or import it: nspod image import {self.name} FILE|DIR)")
        if self._conf is None:
            self._conf = conf.load()
        candidates = self._conf.candidates(self.ref, reference.is_short(self.text))
        errors = []
        for candidate in candidates:
            # A short name on a search registry: the store keeps the name as written (the
            # pod's spec finds it by it); its reference records where it came from.
            self.source = candidate
            for endpoint in self._conf.endpoints(candidate):
                try:
                    return self._from(endpoint, present)
                except RegistryError as e:
                    errors.append(str(e))
                    if not endpoint.mirror:
                        break
        shown = self.ref if len(candidates) == 1 else (
            f"{self.text} (searched {', '.join(self._conf.search)})")
        raise PullError(f"pull {shown}: " + "; then ".join(errors))

    def _stored(self):
        path = os.path.join(images.image_dir(self.root, self.name), images.CONFIG_FILE)
        try:
            stored = state.read_json(path)
        except (OSError, ValueError):
            return None
        root = stored.get("root")
        if root is not None and not (store.valid_id(root) and os.path.isdir(
                os.path.join(self.store, store.ROOTS, root, images.ROOTFS))):
            return None     # its root is gone (removed by hand): pull it again
        return stored

    def _client(self, endpoint):
        creds = auth.credentials(endpoint.host, endpoint.path, self.auth_files)
        return client.Client(api_host(endpoint.host), endpoint.path, insecure=endpoint.insecure,
                             credentials=creds)

    def _from(self, endpoint, present):
        c = self._client(endpoint)
        what = f"{self.source}"
        data, media_type, header_digest = c.manifest(self.ref.selector)
        self.transferred += len(data)
        top = verify_manifest(data, self.ref.digest or header_digest, f"{what}: manifest")
        if present is not None and present.get("digest") == top:
            return present          # the same image: nothing more to transfer
        kind, doc = parse_manifest(data, media_type, f"{what}: manifest")
        manifests = [(top, data)]
        if kind in (client.OCI_INDEX, client.DOCKER_LIST):
            chosen = select_platform(doc, what=f"{what}: index")
            digest = _descriptor_digest(chosen, f"{what}: index entry")
            data = store.read_blob(self.store, digest)
            if data is None:
                data, media_type, _ = c.manifest(digest)
                self.transferred += len(data)
            verify_manifest(data, digest, f"{what}: manifest {digest}")
            kind, doc = parse_manifest(data, chosen.get("mediaType", media_type),
                                       f"{what}: manifest {digest}")
            if kind in (client.OCI_INDEX, client.DOCKER_LIST):
                raise PullError(f"{what}: nested indexes are not supported")
            manifests.append((digest, data))
        manifest_digest = manifests[-1][0]
        return self._image(c, doc, manifest_digest, manifests, top)

    def _image(self, c, manifest, manifest_digest, manifests, top):
        what = f"{self.source}"
        config_d = manifest.get("config")
        config_digest = _descriptor_digest(config_d, f"{what}: config")
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            raise PullError(f"{what}: manifest has no layers list")
        digests = [_descriptor_digest(d, f"{what}: layer {i}") for i, d in enumerate(layers)]
        for i, d in enumerate(layers):
            kind = d.get("mediaType", "")
            if kind in zstd_layers.MEDIA_TYPES:
                try:
                    zstd_layers.require(f"{what}: layer {i} ({d['digest']})")
                except images.ImageError as e:
                    raise PullError(str(e)) from None
            elif kind not in _GZIP_LAYERS + _TAR_LAYERS:
                raise PullError(f"{what}: layer {i} has unsupported media type {kind!r}")
        store.ensure_dirs(self.store)
        with store.locked(self.store, exclusive=False):
            images._remove_leftovers(self.store)
            self.work = os.path.join(self.store,
                                     f".pull-{images._owner_tag()}-{uuid.uuid4().hex[:8]}")
            os.mkdir(self.work, 0o700)
            try:
                return self._make(c, manifest, manifest_digest, manifests, top, config_d,
                                  config_digest, layers, digests)
            except OSError as e:
                raise PullError(f"{what}: storing it: {describe(e)}") from None
            finally:
                shutil.rmtree(self.work, ignore_errors=True)

    def _make(self, c, manifest, manifest_digest, manifests, top, config_d, config_digest,
              layers, digests):
        what = f"{self.source}"
        config_data = store.read_blob(self.store, config_digest)
        if config_data is None:
            path = self._download(c, config_d, f"{what}: config", 1 << 20, progress=False)
            with open(path, "rb") as f:
                config_data = f.read()
        try:
            config = json.loads(config_data)
            if not isinstance(config, dict):
                raise ValueError
        except ValueError:
            raise PullError(f"{what}: the image config is not a JSON object") from None
        store.put_blob(self.store, config_digest, config_data, self.work)
        for digest, data in manifests:
            store.put_blob(self.store, digest, data, self.work)
        # New layers are unpacked into the work directory first and moved into .layers/
        # only once every layer is in: a refused layer (a digest mismatch, a tar bomb past
        # NSPOD_UNPACK_LIMITS) leaves no layer of the image behind.
        budget = unpack_limits.Budget(self.limits)
        where, new = [], []
        for i, (d, digest) in enumerate(zip(layers, digests)):
            final = store.layer_dir(self.store, digest)
            if os.path.isdir(final):
                # Unpacked already, for this image or another: it counts toward this image.
                try:
                    budget.charge_existing(*unpack_limits.count_tree(final))
                except images.ImageError as e:
                    raise PullError(f"{what}: {e}") from None
                where.append(final)
                continue
            unpacked = os.path.join(self.work, "layer-" + store.digest_id(digest))
            if not os.path.isdir(unpacked):     # a layer listed twice is unpacked once
                path = self._download(c, d, f"{what}: layer {i}", None, progress=True)
                os.mkdir(unpacked, 0o755)
                self._unpack(path, d.get("mediaType", ""), unpacked, budget.layer("it"),
                             f"{what}: layer {i} ({digest})")
                os.unlink(path)
                new.append((unpacked, final))
            where.append(unpacked)
        root = store.root_dir(self.store, manifest_digest)
        making = None
        if not os.path.isdir(os.path.join(root, "rootfs")):
            making = os.path.join(self.work, "root")
            os.mkdir(making, 0o700)
            rootfs = os.path.join(making, "rootfs")
            os.mkdir(rootfs, 0o755)
            store.compose(where, rootfs)
            state.write_json(os.path.join(making, "root.json"), {
                "layers": digests,
                "blobs": sorted({config_digest, manifest_digest, top}),
                "size": store.tree_size(rootfs)})
        for unpacked, final in new:
            try:
                os.rename(unpacked, final)
            except OSError:
                if not os.path.isdir(final):
                    raise
                # Another pull unpacked it meanwhile: theirs is as good.
        if making is not None:
            try:
                os.rename(making, root)
            except OSError:
                if not os.path.isdir(os.path.join(root, "rootfs")):
                    raise
        else:
            # The same content under another name or tag: record the top digest too.
            meta = state.read_json(os.path.join(root, "root.json"))
            if top not in meta.get("blobs", []):
                meta["blobs"] = sorted(set(meta.get("blobs", [])) | {top})
                state.write_json(os.path.join(root, "root.json"), meta)
        meta = state.read_json(os.path.join(root, "root.json"))
        c_ = config.get("config") or {}
        stored = {
            "name": self.name, "format": "registry", "source": str(self.source),
            "reference": str(self.source), "digest": top, "manifest": manifest_digest,
            "root": store.digest_id(manifest_digest), "layers": digests,
            "created": state.now_rfc3339(), "size": meta.get("size", 0),
            "entrypoint": c_.get("Entrypoint"), "cmd": c_.get("Cmd"),
            "env": c_.get("Env") or [], "workingDir": c_.get("WorkingDir") or "",
            "user": c_.get("User") or "",
        }
        self._record(stored)
        return stored

    def _unpack(self, path, media_type, dest, budget, what):
        """A downloaded layer's files into dest, bounded by `budget`."""
        try:
            with open(path, "rb") as f:
                with (zstd_layers.open_tar(f, what) if media_type in zstd_layers.MEDIA_TYPES
                      else tarfile.open(fileobj=f, mode="r:*")) as tar:
                    images._extract(tar, dest, budget=budget)
        except (tarfile.TarError, EOFError, zlib.error, OSError, images.ImageError) as e:
            raise PullError(f"{what}: cannot unpack it: {describe(e)}") from None

    def _record(self, stored):
        """The image's name, written last: a reader sees the old image or the new one."""
        final = images.image_dir(self.root, self.name)
        making = os.path.join(self.work, "image")
        os.mkdir(making, 0o700)
        state.write_json(os.path.join(making, images.CONFIG_FILE), stored)
        try:
            os.rename(making, final)
        except OSError:
            if not os.path.isdir(final) or os.path.isdir(os.path.join(final, images.ROOTFS)):
                raise PullError(f"image {self.name} exists as an imported image (remove it "
                                f"first: nspod image rm {self.name})") from None
            os.rename(os.path.join(making, images.CONFIG_FILE),
                      os.path.join(final, images.CONFIG_FILE))

    def _download(self, c, descriptor, what, limit, progress):
        """A blob streamed into the work directory, its digest and size checked."""
        digest = descriptor["digest"]
        size = descriptor.get("size")
        if limit is not None and size is not None and size > limit:
            raise PullError(f"{what}: {size} bytes, more than {limit}")
        algorithm, _, hex_digest = digest.partition(":")
        hasher = hashlib.new(algorithm)
        path = os.path.join(self.work, "download-" + store.digest_id(digest))
        response, conn = c.blob(digest)
        done = 0
        try:
            with open(path, "wb") as f:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except OSError as e:
                        raise RegistryError(f"{c.where()}: {what}: the transfer of {digest} "
                                            f"broke after {done} bytes: "
                                            f"{describe(e)}") from None
                    except Exception as e:   # http.client.IncompleteRead and the like
                        raise RegistryError(f"{c.where()}: {what}: the transfer of {digest} "
                                            f"broke after {done} bytes "
                                            f"({type(e).__name__})") from None
                    if not chunk:
                        break
                    done += len(chunk)
                    self.transferred += len(chunk)
                    if (size is not None and done > size) or (limit and done > limit):
                        raise PullError(f"{what}: {digest}: more bytes than its size "
                                        f"{size if size is not None else limit}")
                    hasher.update(chunk)
                    f.write(chunk)
                    if progress:
                        self.progress(digest, done, size)
        finally:
            conn.close()
        if size is not None and done != size:
            raise RegistryError(f"{c.where()}: {what}: the transfer of {digest} ended after "
                                f"{done} of {size} bytes")
        if hasher.hexdigest() != hex_digest:
            raise PullError(f"{what}: digest mismatch: expected {digest}, got "
                            f"{algorithm}:{hasher.hexdigest()} (refused, nothing stored)")
        return path


def pull(root, text, progress=None, policy="Always", registries=None, auth_files=None,
         explicit=False):
    """Pull `text` into the store under `root`; returns (stored config, bytes transferred)."""
    p = Pull(root, text, progress, registries, auth_files)
    stored = p.run(policy, explicit)
    return stored, p.transferred


def ensure(root, pod_manifest, progress=None):
    """Before a pod starts: every container's image, pulled as its imagePullPolicy says
    (Kubernetes' default: Always for :latest or no tag, else IfNotPresent). Images by path
    are left alone. An image `nspod image import` made is used as it is under Always too: no
    registry has it."""
    spec = (pod_manifest or {}).get("spec") or {}
    done = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or ()):
            if not isinstance(c, dict):
                continue
            image = c.get("image")
            if not isinstance(image, str) or not image or image.startswith("/"):
                continue
            policy = c.get("imagePullPolicy") or reference.default_pull_policy(image)
            if policy == "Never" or (image, policy) in done:
                continue    # Never: the plan refuses a missing image, saying what to do
            done.add((image, policy))
            try:
                pull(root, image, progress, policy)
            except PullError as e:
                name = reference.store_name(image)
                raise PullError(f"spec.{key}[{i}].image: {image!r}: {e} "
                                f"(pull it: nspod image pull {name}, or import it: "
                                f"nspod image import {name} FILE|DIR)") from None

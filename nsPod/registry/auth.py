"""Registry credentials and authentication challenges.

Credentials are read as Podman reads them (containers-auth.json(5)), first file that has an
entry wins: $REGISTRY_AUTH_FILE; else ${XDG_RUNTIME_DIR}/containers/auth.json,
$XDG_CONFIG_HOME/containers/auth.json (~/.config/...), ~/.docker/config.json,
~/.dockercfg (legacy, top-level entries). An entry `"auths": {KEY: {"auth": base64(user:pass)}}`
is looked up from the most specific key (host/namespace/repo) to the host; a key may carry a
scheme and a path (https://index.docker.io/v1/ is docker.io). In each file, as
containers-auth.json(5) says, a `credHelpers` entry for the registry's host wins over its
`auths` entries ("the base64-encoded auth will not be used" for it); a file's `credsStore`
(Docker's default helper) is asked after its `auths` entries found nothing. Helpers are run
by cred_helpers.py; one that has no credentials passes to the next file.

Challenges (RFC 7235 WWW-Authenticate): `Bearer realm=...,service=...,scope=...` asks for a
token from the realm, anonymously or with the credentials (the distribution token protocol);
`Basic realm=...` asks for the credentials on every request.
"""
import base64
import binascii
import json
import os
import re

from nsPod.errors import NspodError, describe
from nsPod.registry import cred_helpers

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


class AuthError(NspodError):
    """Credentials unreadable, or the registry refused them."""


def parse_challenge(header):
    """(scheme lowercased, {param: value}) of one WWW-Authenticate header, or None."""
    if not header or not isinstance(header, str):
        return None
    scheme, _, rest = header.strip().partition(" ")
    if not scheme or not scheme.isalpha():
        return None
    params, pos = {}, 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r'\\(.)', r'\1', value[1:-1])
        params[m.group(1).lower()] = value
        pos = m.end()
    return scheme.lower(), params


def auth_files():
    """The credential files Podman reads, in its order."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return [os.environ["REGISTRY_AUTH_FILE"]]
    home = os.path.expanduser("~")
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files.append(os.path.join(config_home, "containers", "auth.json"))
    files.append(os.path.join(home, ".docker", "config.json"))
    files.append(os.path.join(home, ".dockercfg"))
    return files


def _normalise_key(key):
    key = key.strip()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            # docker's legacy keys are URLs: the path beyond the host is not a namespace.
            key = key.split("/", 1)[0]
            break
    key = key.rstrip("/")
    if key in ("index.docker.io", "registry-1.docker.io"):
        key = "docker.io"
    return key


def credentials(domain, path, files=None):
    """(user, password) for domain/path from the first credential file with an entry that
    matches, or None. AuthError for an unreadable or malformed file that exists."""
    wanted = [f"{domain}/{path}"]
    parts = path.split("/")
    wanted += [f"{domain}/{'/'.join(parts[:i])}" for i in range(len(parts) - 1, 0, -1)]
    wanted.append(domain)
    for file in files if files is not None else auth_files():
        data = _read(file)
        if data is None:
            continue
        entries, helpers, store = _sections(data, file)
        helper = {_normalise_key(k): v for k, v in helpers.items()}.get(domain)
        if helper is not None:
            found = _from_helper(helper, domain, f"credentials file {file}: credHelpers"
                                                 f"[{domain!r}]")
            if found is not None:
                return found
            continue
        by_key = {_normalise_key(k): v for k, v in entries.items()}
        for key in wanted:
            entry = by_key.get(key)
            if entry is not None:
                return _decode(entry, file, key)
        if store:
            found = _from_helper(store, domain, f"credentials file {file}: credsStore")
            if found is not None:
                return found
    return None


def _from_helper(name, domain, where):
    # Docker keeps docker.io's credentials under its legacy index URL; others by host.
    server = "https://index.docker.io/v1/" if domain == "docker.io" else domain
    try:
        return cred_helpers.get(name, server, where)
    except cred_helpers.HelperError as e:
        raise AuthError(str(e)) from None


def _read(file):
    try:
        with open(file) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuthError(f"credentials file {file}: {describe(e)}") from None
    if not isinstance(data, dict):
        raise AuthError(f"credentials file {file}: not a JSON object")
    return data


def _sections(data, file):
    """(auths, credHelpers, credsStore) of a credentials file, each checked."""
    legacy = file.endswith(".dockercfg") and "auths" not in data
    auths = data if legacy else data.get("auths", {})
    if not isinstance(auths, dict):
        raise AuthError(f"credentials file {file}: \"auths\" is not an object")
    if legacy:
        return auths, {}, ""
    helpers = data.get("credHelpers", {})
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise AuthError(f"credentials file {file}: \"credHelpers\" is not an object of "
                        "registry: helper name")
    store = data.get("credsStore", "")
    if not isinstance(store, str):
        raise AuthError(f"credentials file {file}: \"credsStore\" is not a helper name")
    return auths, helpers, store


def _decode(entry, file, key):
    if not isinstance(entry, dict):
        raise AuthError(f"credentials file {file}: auths[{key!r}] is not an object")
    if entry.get("identitytoken"):
        raise AuthError(f"credentials file {file}: auths[{key!r}] has an identitytoken "
                        "(OAuth refresh tokens are not supported: log in with a password)")
    if entry.get("username") and "password" in entry:
        return str(entry["username"]), str(entry["password"])
    raw = entry.get("auth")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        user, colon, password = base64.b64decode(raw, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError(f"credentials file {file}: auths[{key!r}].auth is not "
                        "base64(user:password)") from None
    if not colon:
        raise AuthError(f"credentials file {file}: auths[{key!r}].auth is not "
                        "base64(user:password)")
    return user, password


def basic_header(creds):
    user, password = creds
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

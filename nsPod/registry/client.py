"""The OCI distribution (Docker registry v2) protocol's read side, over http.client.

Only what a pull needs: GET /v2/<name>/manifests/<tag|digest> with the Accept types nspod
understands, GET /v2/<name>/blobs/<digest> streamed, the authentication challenges
(auth.py), and redirects (a blob is often served from elsewhere: the Authorization header
never follows a redirect to another host). docs/design.md says why not python-dxf or oras.

TLS is verified with the system's CA store. A registry marked `insecure` in registries.conf
is tried over TLS without verification first, then over plain HTTP, as containers/image does.
"""
import http.client
import json
import socket
import ssl
import urllib.parse

from nsPod.errors import NspodError, describe
from nsPod.registry import auth

TIMEOUT = 60           # seconds without a byte before a request fails
MAX_REDIRECTS = 5
MANIFEST_MAX = 4 << 20   # a manifest or index larger than this is refused (distribution: 4 MiB)
USER_AGENT = "nspod"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V1 = ("application/vnd.docker.distribution.manifest.v1+json",
             "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


class RegistryError(NspodError):
    """The registry cannot be reached, or answered with an error (exit 1)."""

    def __init__(self, message, status=None, retry_elsewhere=True):
        super().__init__(message)
        self.status = status
        self.retry_elsewhere = retry_elsewhere


class Client:
    """One registry endpoint (host[:port]) and one repository on it."""

    def __init__(self, host, repository, insecure=False, credentials=None, timeout=TIMEOUT):
        self.host = host
        self.repository = repository
        self.insecure = insecure
        self.credentials = credentials         # (user, password) or None
        self.timeout = timeout
        self.scheme = "https"
        # host -> Authorization: a blob redirected to storage elsewhere may be challenged
        # there too; the credentials only ever go to the registry's own host.
        self._authorization = {}
        self._scheme_settled = not insecure

    # --- requests ---------------------------------------------------------------------------

    def manifest(self, selector):
        """(bytes, media type, Docker-Content-Digest or "") of a manifest by tag or digest."""
        response, conn = self._get(f"/v2/{self.repository}/manifests/{selector}",
                                   {"Accept": ACCEPT})
        try:
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > MANIFEST_MAX:
                raise RegistryError(f"{self.where()}: manifest {selector} is {length} bytes, "
                                    f"more than nspod accepts ({MANIFEST_MAX})")
            body = response.read(MANIFEST_MAX + 1)
            if len(body) > MANIFEST_MAX:
                raise RegistryError(f"{self.where()}: manifest {selector} is larger than "
                                    f"{MANIFEST_MAX} bytes")
            media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
            return body, media_type, response.getheader("Docker-Content-Digest") or ""
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"{self.where()}: reading manifest {selector}: "
                                f"{_network(e)}") from None
        finally:
            conn.close()

    def blob(self, digest):
        """(response, connection) streaming a blob; the caller reads and closes."""
        return self._get(f"/v2/{self.repository}/blobs/{digest}", {})

    def where(self):
        return f"{self.host}/{self.repository}"

    # --- the machinery ----------------------------------------------------------------------

    def _get(self, path, headers):
        """A 200 response (and its connection), having answered one auth challenge and
        followed redirects; RegistryError otherwise."""
        answered = set()
        host, url_path, scheme = self.host, path, None
        for _ in range(MAX_REDIRECTS + 1):
            send = dict(headers, **{"User-Agent": USER_AGENT})
            if host in self._authorization:
                send["Authorization"] = self._authorization[host]
            response, conn = self._request(host, url_path, send, scheme)
            status = response.status
            if status == 200:
                return response, conn
            body = _drain(response)
            conn.close()
            if status in (301, 302, 303, 307, 308):
                location = response.getheader("Location") or ""
                target = urllib.parse.urlsplit(urllib.parse.urljoin(
                    f"{scheme or self.scheme}://{host}{url_path}", location))
                if target.scheme not in ("http", "https") or not target.netloc:
                    raise RegistryError(f"{self.where()}: redirected to {location!r}")
                if target.scheme == "http" and target.netloc != self.host and not self.insecure:
                    raise RegistryError(f"{self.where()}: redirected to plain HTTP "
                                        f"{target.netloc}, which TLS was required for")
                host, scheme = target.netloc, target.scheme
                url_path = target.path + (f"?{target.query}" if target.query else "")
                continue
            if status == 401 and host not in answered:
                self._answer(response.getheader("WWW-Authenticate"), host)
                answered.add(host)
                continue
            raise _status_error(self.where(), url_path, status, body, self.credentials)
        raise RegistryError(f"{self.where()}: more than {MAX_REDIRECTS} redirects for {path}")

    def _request(self, host, path, headers, scheme=None):
        while True:
            use = scheme or self.scheme
            conn = self._connection(host, use)
            try:
                conn.request("GET", path, headers=headers)
                return conn.getresponse(), conn
            except ssl.SSLError as e:
                conn.close()
                if scheme is None and self.insecure and not self._scheme_settled:
                    # An insecure registry that speaks plain HTTP: ask again without TLS.
                    self.scheme, self._scheme_settled = "http", True
                    continue
                hint = ("; if it serves plain HTTP, mark it insecure = true in registries.conf"
                        if not self.insecure else "")
                raise RegistryError(f"{host}: TLS: {e.reason or e}{hint}") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if (scheme is None and self.insecure and not self._scheme_settled
                        and isinstance(e, (ConnectionResetError, http.client.BadStatusLine,
                                           http.client.RemoteDisconnected))):
                    self.scheme, self._scheme_settled = "http", True
                    continue
                raise RegistryError(f"{host}: {_network(e)}") from None
            finally:
                if scheme is None and self.insecure:
                    self._scheme_settled = True

    def _connection(self, host, scheme):
        if scheme == "http":
            return http.client.HTTPConnection(host, timeout=self.timeout)
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, timeout=self.timeout, context=context)

    def _answer(self, header, host):
        """Set the Authorization this client sends to `host`, from a 401's challenge."""
        creds = self.credentials if host == self.host else None
        challenge = auth.parse_challenge(header)
        if challenge is None:
            raise RegistryError(f"{self.where()}: 401 Unauthorized without a usable "
                                f"WWW-Authenticate challenge ({header!r})", status=401)
        scheme, params = challenge
        if scheme == "basic":
            if not creds:
                raise RegistryError(_need_credentials(host), status=401)
            self._authorization[host] = auth.basic_header(creds)
        elif scheme == "bearer":
            self._authorization[host] = "Bearer " + self._token(params, creds)
        else:
            raise RegistryError(f"{self.where()}: unsupported authentication scheme "
                                f"{scheme!r}", status=401)

    def _token(self, params, creds):
        """The distribution token protocol: GET realm?service=...&scope=repository:NAME:pull,
        with the credentials as Basic auth when there are some."""
        realm = params.get("realm", "")
        target = urllib.parse.urlsplit(realm)
        if target.scheme not in ("https", "http") or not target.netloc:
            raise RegistryError(f"{self.where()}: bad token realm {realm!r}", status=401)
        if target.scheme == "http" and not self.insecure:
            raise RegistryError(f"{self.where()}: token realm {realm} is plain HTTP; "
                                "mark the registry insecure in registries.conf to allow it")
        query = urllib.parse.parse_qsl(target.query)
        if params.get("service"):
            query.append(("service", params["service"]))
        query.append(("scope", params.get("scope") or f"repository:{self.repository}:pull"))
        path = (target.path or "/") + "?" + urllib.parse.urlencode(query)
        headers = {"User-Agent": USER_AGENT}
        if creds:
            headers["Authorization"] = auth.basic_header(creds)
        conn = self._connection(target.netloc, target.scheme)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read(1 << 20)
        except ssl.SSLError as e:
            raise RegistryError(f"{target.netloc}: TLS: {e.reason or e}") from None
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"token server {target.netloc}: {_network(e)}") from None
        finally:
            conn.close()
        if response.status in (401, 403):
            raise RegistryError(
                _need_credentials(self.host) if not creds else
                f"{self.host}: the token server refused the credentials ({response.status})",
                status=401)
        if response.status != 200:
            raise RegistryError(f"token server {target.netloc}: HTTP {response.status}")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token server {target.netloc}: no token in its answer")
        return token


def _need_credentials(host):
    return (f"{host} needs credentials: put them in $REGISTRY_AUTH_FILE or "
            "~/.docker/config.json (\"auths\": {\"" + host + "\": {\"auth\": "
            "base64(user:password)}})")


def _drain(response):
    try:
        return response.read(64 << 10)
    except (OSError, http.client.HTTPException):
        return b""


def _status_error(where, path, status, body, credentials):
    detail = ""
    try:
        errors = json.loads(body).get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:3]
                           if isinstance(e, dict))
    except (ValueError, AttributeError):
        pass
    what = path.split("/")[-2] if path.count("/") >= 2 else "request"
    if status == 401:
        text = (f"{where}: the registry refused the credentials" if credentials
                else _need_credentials(where.split("/")[0]))
        return RegistryError(text + (f" ({detail})" if detail else ""), status=401)
    if status == 404:
        return RegistryError(f"{where}: {what[:-1] if what.endswith('s') else what} "
                             f"{path.rsplit('/', 1)[-1]} not found" +
                             (f" ({detail})" if detail else ""), status=404)
    return RegistryError(f"{where}: HTTP {status}" + (f": {detail}" if detail else ""),
                         status=status)


def _network(e):
    if isinstance(e, socket.timeout):
        return f"no answer in {TIMEOUT} s"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the registry closed the connection without answering"
    if isinstance(e, http.client.IncompleteRead):
        return "the connection closed in the middle of the transfer"
    if isinstance(e, http.client.HTTPException):
        return f"bad HTTP answer ({type(e).__name__})"
    return describe(e)

"""Real services on 127.0.0.1 for the live tests and benchmarks: moto (S3), PostgreSQL, a
stand-in for the SAM ML backend, and the processes around them, each on a free port.
Readiness is always a poll of an endpoint against a deadline. Label Studio itself is
served by tests/label_studio_server.py; tests/live_stack.py puts them together.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

from tests.prerequisites import POSTGRES_INSTALL, MissingPrerequisite

LOOPBACK = "127.0.0.1"
# The SAM stand-in listens on another loopback address: Label Studio lets exactly the ML
# backend's address through its SSRF protection (tests/app_environment.py), and everything
# else on 127.0.0.1 (moto, PostgreSQL) must stay refused to the URLs members enter.
SAM_STUB_ADDRESS = "127.0.0.2"
MOTO_READY_SECONDS = 60
POLL_SECONDS = 0.5
# moto accepts any credentials; these only have to look like AWS keys.
MOTO_ACCESS_KEY_ID = "AKIAMOTOTESTINGKEY00"
MOTO_SECRET_ACCESS_KEY = "moto-accepts-any-secret-key-value-here"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


# /proc/net/tcp's state of a listening socket.
_TCP_LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which a TCP socket of this machine listens on `port`, IPv4 and IPv6."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                address, _, hex_port = fields[1].partition(":")
                if fields[3] == _TCP_LISTEN and int(hex_port, 16) == port:
                    found.add(_kernel_address(address, family))
    return found


def _kernel_address(hex_address: str, family: int) -> str:
    """An address as /proc/net/tcp prints it: each 32-bit word in the machine's byte order."""
    raw = bytes.fromhex(hex_address)
    words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    return socket.inet_ntop(family, b"".join(word[::-1] if sys.byteorder == "little" else word for word in words))


def wait_until(ready: Callable[[], bool], timeout_seconds: float, what: str,
               still_running: Callable[[], bool] = lambda: True) -> None:
    """Poll `ready` until it holds; fail with `what` when the deadline passes or the process died."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if ready():
            return
        if not still_running():
            raise RuntimeError(f"{what}: the process exited before it became ready")
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{what} was not ready within {timeout_seconds:.0f} s")


def http_answers(url: str, expect_status: int | None = None, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return expect_status is None or response.status == expect_status
    except urllib.error.HTTPError as error:
        return expect_status is None or error.code == expect_status
    except OSError:
        return False


def console_script(name: str) -> str:
    """A console script of the interpreter running the tests (the project venv), else PATH."""
    beside_interpreter = Path(sys.executable).with_name(name)
    if beside_interpreter.exists():
        return str(beside_interpreter)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed in {Path(sys.executable).parent} nor on PATH")
    return found


@dataclass
class ManagedProcess:
    """A child process whose output goes to a log file, ended on stop()."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.is_running():
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def start_process(name: str, command: list[str], log_dir: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> ManagedProcess:
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - the child owns it until it exits
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                               stdin=subprocess.DEVNULL)
    log_file.close()
    return ManagedProcess(name, process, log_path)


def wait_for_process_url(process: ManagedProcess, url: str, timeout_seconds: float,
                         expect_status: int | None = None, context: ssl.SSLContext | None = None) -> None:
    try:
        wait_until(lambda: http_answers(url, expect_status, context), timeout_seconds,
                   f"{process.name} at {url}", process.is_running)
    except (RuntimeError, TimeoutError) as error:
        raise RuntimeError(f"{error}\n--- last lines of {process.log_path} ---\n{process.log_tail()}") from None


# ---------------------------------------------------------------- moto (S3)

def start_moto(log_dir: Path, port: int | None = None, tls: tuple[Path, Path, Path] | None = None
               ) -> tuple[ManagedProcess, str]:
    """moto on `port` (default: a free one); a restart on the same port starts empty. With
    `tls` (CA file, certificate, key) it serves https with that certificate."""
    port = port or free_port()
    command = [console_script("moto_server"), "-H", LOOPBACK, "-p", str(port)]
    if tls:
        command += ["-c", str(tls[1]), "-k", str(tls[2])]
    endpoint = f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"
    moto = start_process("moto", command, log_dir)
    context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
    wait_for_process_url(moto, f"{endpoint}/moto-api/", MOTO_READY_SECONDS, context=context)
    return moto, endpoint


def s3_client(endpoint: str, region: str = "us-east-1", verify: str | None = None):
    """A boto3 client of the store; `verify`: the CA file of an https store with a private CA."""
    import boto3  # moto[server] brings boto3; the reconciler itself never needs it

    return boto3.client("s3", endpoint_url=endpoint, region_name=region, verify=verify,
                        aws_access_key_id=MOTO_ACCESS_KEY_ID, aws_secret_access_key=MOTO_SECRET_ACCESS_KEY)


def png_bytes(index: int, side: int = 8) -> bytes:
    """A tiny valid PNG whose colour encodes `index`, so every object has distinct content."""
    red, green, blue = index & 0xFF, (index >> 8) & 0xFF, (index >> 16) & 0xFF
    row = b"\x00" + bytes((red, green, blue)) * side

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * side)) + chunk(b"IEND", b""))


def upload_images(endpoint: str, bucket: str, prefix: str, count: int, workers: int = 16,
                  verify: str | None = None) -> list[str]:
    """Create `bucket` if needed and put `count` small PNGs under `prefix/`; returns the keys."""
    client = s3_client(endpoint, verify=verify)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    keys = [f"{prefix}/{index}.png" for index in range(count)]

    def put(index_and_key: tuple[int, str]) -> None:
        index, key = index_and_key
        client.put_object(Bucket=bucket, Key=key, Body=png_bytes(index), ContentType="image/png")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, enumerate(keys)))
    return keys


# ---------------------------------------------------------------- Label Studio

@dataclass(frozen=True)
class LabelStudioAdmin:
    email: str
    password: str
    token: str

    @classmethod
    def generate(cls) -> "LabelStudioAdmin":
        # Made at run time: no credential is committed. The legacy token must be 6-40 chars.
        return cls(email="admin@example.com", password=secrets.token_urlsafe(18), token=secrets.token_hex(20))


# ---------------------------------------------------------------- PostgreSQL

POSTGRES_READY_SECONDS = 60


def postgres_program(name: str) -> str:
    """A PostgreSQL server program (the newest installed major version has it)."""
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    raise MissingPrerequisite(f"{name}: no PostgreSQL server under /usr/lib/postgresql; {POSTGRES_INSTALL}")


@contextlib.contextmanager
def running_postgres(log_dir: Path) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL on 127.0.0.1; yields the libpq environment to reach it.

    The server refuses to run as root, so under root (CI) it runs as the postgres user.
    """
    postgres_program("initdb")  # first: without a server there is no postgres user either
    as_server_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data_dir = Path(tempfile.mkdtemp(prefix="labeling-postgres-"))
    if as_server_user:
        shutil.chown(data_dir, "postgres", "postgres")
    port = free_port()
    try:
        subprocess.run([*as_server_user, postgres_program("initdb"), "--pgdata", str(data_dir / "data"),
                        "--username", "labelstudio", "--auth", "trust", "--encoding", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        server = start_process("postgres", [
            *as_server_user, postgres_program("postgres"), "-D", str(data_dir / "data"), "-p", str(port),
            "-k", str(data_dir), "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off"], log_dir)
        libpq = {"PGHOST": LOOPBACK, "PGPORT": str(port), "PGUSER": "labelstudio", "PGDATABASE": "labelstudio"}
        try:
            wait_until(lambda: subprocess.run([postgres_program("pg_isready"), "-h", LOOPBACK, "-p", str(port)],
                                              capture_output=True).returncode == 0,
                       POSTGRES_READY_SECONDS, "postgres", server.is_running)
            subprocess.run([postgres_program("createdb"), "labelstudio"], env={**os.environ, **libpq},
                           check=True, capture_output=True)
            yield libpq
        finally:
            server.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ---------------------------------------------------------------- a browser's session

class BrowserSession:
    """Label Studio as a browser uses it: the login form, then the session cookie (not the API
    token) on every request, redirects followed."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, bytes, str]:
        """(status, body, content type) of a GET, after redirects."""
        try:
            with self._opener.open(self.base_url + path, timeout=60) as response:
                return response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("Content-Type", "")

    def log_in(self, email: str, password: str) -> "BrowserSession":
        status, page, _ = self.get("/user/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise AssertionError(f"no login form at {self.base_url}/user/login/ ({status})")
        form = urllib.parse.urlencode({"email": email, "password": password,
                                       "csrfmiddlewaretoken": token.group(1).decode()}).encode()
        request = urllib.request.Request(self.base_url + "/user/login/", data=form,
                                         headers={"Referer": self.base_url + "/user/login/"})
        with self._opener.open(request, timeout=60):
            pass
        if not any(cookie.name == "sessionid" for cookie in self.cookies):
            raise AssertionError(f"logging in as {email} gave no session")
        return self


# ---------------------------------------------------------------- SAM backend stand-in

@dataclass
class SamBackendStub:
    """Answers like label_studio_ml's server: GET /health, POST /setup, POST /predict.

    `healthy_after_calls` lets a test mimic a backend that is still loading its model;
    `predict` answers /predict (status, document), else every task gets an empty result.
    """

    healthy_after_calls: int = 0
    predict: Callable[[dict], tuple[int, dict]] | None = None
    # 0: a free port. one_at_a_time: requests wait for each other, like gunicorn with THREADS=1.
    port: int = 0
    one_at_a_time: bool = False
    model_version: str = "sam-stub-1"
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _health_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append((method, path, body))
            if path in ("/health", "/"):
                self._health_calls += 1
                if self._health_calls <= self.healthy_after_calls:
                    return 503, {"status": "LOADING"}
                return 200, {"status": "UP", "model_class": "SamStub"}
        if method == "POST" and path == "/setup":
            return 200, {"model_version": self.model_version}
        if method == "POST" and path == "/predict" and self.predict:
            return self.predict(body)
        if method == "POST" and path == "/predict":
            return 200, {"results": [{"result": [], "score": 0.0, "model_version": self.model_version}
                                     for _ in body.get("tasks", [])],
                         "model_version": self.model_version}
        return 404, {"error": f"no route {method} {path}"}

    def start(self) -> "SamBackendStub":
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                status, answer = stub._answer(method, self.path.split("?")[0], body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._respond("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._respond("POST")

            def log_message(self, *args) -> None:
                pass  # keep pytest output to the reconciler's lines

        server_class = HTTPServer if self.one_at_a_time else ThreadingHTTPServer
        # Waiting requests queue in the listen backlog, as in gunicorn's (2048).
        server_class.request_queue_size = 128
        self._server = server_class((SAM_STUB_ADDRESS, self.port), Handler)
        self.url = f"http://{SAM_STUB_ADDRESS}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def paths_called(self) -> list[str]:
        with self._lock:
            return [path for _, path, _ in self.requests]

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

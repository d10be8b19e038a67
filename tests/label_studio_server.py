"""Label Studio 1.23.2 served the way the image serves it: uWSGI, on PostgreSQL, on 127.0.0.1.

In the cluster the chart's app container runs the image's `label-studio-uwsgi`, which
(deploy/docker-entrypoint.sh) runs the app init scripts and then
`uwsgi --ini /label-studio/deploy/uwsgi.ini`; an init container runs
`label-studio-migrate` = `python3 /label-studio/label_studio/manage.py locked_migrate`
first, and the app container itself skips migrations (SKIP_DB_MIGRATIONS=true). This
module does the same with the pip package and `pyuwsgi` (PyPI):

1. a throwaway PostgreSQL (tests/live_services.py `running_postgres`), unless the caller
   brings a database;
2. `python manage.py locked_migrate` in the package directory (what `label-studio-migrate`
   runs; the pip install has no such command);
3. `label-studio init -q`, what the image's app init script `31-run-label-studio-init.sh`
   runs: it makes the first admin from LABEL_STUDIO_USERNAME / _PASSWORD / _USER_TOKEN
   (uWSGI itself never creates users);
4. `uwsgi --ini <work_dir>/uwsgi.ini` with the options below, ready when /health answers
   200 before a deadline.

The environment is the caller's (e.g. the rendered app container's env with its local
replacements) on top of the image's own ENV; this module replaces only what belongs to the
local process: the database connection (it owns the database), the data directory (under
`work_dir`), and GIT_CEILING_DIRECTORIES (Label Studio runs `git describe` in its package
directory at import; a venv inside a git checkout would otherwise report, and write into
label_studio/core/version_.py, the checkout's commit as Label Studio's version).

The release's deploy/uwsgi.ini as read from HumanSignal/label-studio at commit
00077f77d53223c921d9168ef22d9ba7bf1bf32f. The 1.23.2 tag is commit
df96d79183156e556d91825d15fa7721f1145e1a (the PyPI wheel records it in
label_studio/core/version_.py); no copy of the file at that commit could be read, so check
the table against the tag when the image's behaviour matters:

| option (uwsgi.ini)                           | here           | why                                         |
|----------------------------------------------|----------------|---------------------------------------------|
| chdir = /label-studio/label_studio           | package dir    | the image symlinks the installed package there |
| http = 0.0.0.0:8080                          | 127.0.0.1:free | loopback only, a free port                   |
| module = core.wsgi:application               | same           |                                              |
| master, single-interpreter, need-app         | same           | harakiri is enforced by the master          |
| cheaper = true                               | same           | adaptive worker spawning, as in the image   |
| processes = $(UWSGI_PROCESSES) or %k * 2     | env or argument| %k is the node's cores, not the pod's limit |
| threads = $(UWSGI_NUMBER_OF_THREADS) or 1    | same           |                                              |
| vacuum, die-on-term                          | same           | clean exit on SIGTERM (stop())              |
| pidfile = /tmp/%n.pid                        | work_dir       | no shared /tmp file                         |
| buffer-size = 65535, post-buffering = 4096   | same           |                                              |
| http-timeout = 300                           | same           | the HTTP router's timeout toward workers    |
| harakiri = 120, harakiri-verbose             | argument, same | tests use a few seconds                     |
| env = APP_WEBSERVER=uwsgi                    | same           | Label Studio reads it                       |
| ignore-sigpipe, ignore-write-errors,         | same           |                                              |
|   disable-write-exception                    |                |                                              |
| disable-logging, log-5xx, memory-report      | same           |                                              |
| auto-procname, procname-prefix = ls-         | same           |                                              |
| enable-threads, thunder-lock, lazy-apps      | same           | lazy-apps: a respawned worker loads Django anew |
| max-requests = 5000, reload-on-rss = 2048,   | same           |                                              |
|   worker-reload-mercy = 300                  |                |                                              |
| stats = :1717, stats-http                    | left out       | a fixed port on every interface; monitoring only |
| logger / log-route / log-encoder (JSON)      | left out       | output format only; plain lines in the log file |
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

from tests.live_services import (
    LOOPBACK,
    ManagedProcess,
    console_script,
    free_port,
    running_postgres,
    start_process,
    wait_for_process_url,
)

# The image's Dockerfile ENV that Label Studio reads (LABEL_STUDIO_BASE_DATA_DIR: see below).
IMAGE_ENV = {"DJANGO_SETTINGS_MODULE": "core.settings.label_studio"}
# From the machine running the tests: what a process needs to run at all, nothing else.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
DEFAULT_PROCESSES = 2
MIGRATE_SECONDS = 600
INIT_SECONDS = 300
# Each worker loads Django itself (lazy-apps): 8-12 s here at start, ~4 s on a respawn.
READY_SECONDS = 240


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    log_path: Path
    uwsgi_ini: Path
    database: Mapping[str, str]  # libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE)
    process: ManagedProcess

    def __str__(self) -> str:
        return self.url


def package_dir(python: Optional[str] = None) -> Path:
    """The installed label_studio package (what the image has at /label-studio/label_studio) of
    `python`'s environment; by default the interpreter running the tests."""
    if python is not None:
        found = subprocess.run([python, "-c", "import importlib.util; print(importlib.util.find_spec('label_studio')"
                                              ".origin)"], capture_output=True, text=True, timeout=60)
        if found.returncode != 0:
            raise FileNotFoundError(f"label-studio is not installed for {python}: {found.stderr.strip()}")
        return Path(found.stdout.strip()).parent
    import importlib.util

    spec = importlib.util.find_spec("label_studio")
    if spec is None or not spec.origin:
        raise FileNotFoundError("label-studio is not installed for this interpreter (requirements-dev.txt)")
    return Path(spec.origin).parent


def environment_script(name: str, python: Optional[str]) -> str:
    """A console script of `python`'s environment, by default the tests' own."""
    return str(Path(python).with_name(name)) if python is not None else console_script(name)


def uwsgi_options(port: int, harakiri_seconds: int, processes: int, threads: int,
                  work_dir: Path, python: Optional[str] = None) -> list[tuple[str, str]]:
    """The release's uwsgi.ini options for a local process (table in the module docstring)."""
    if processes < 2:
        raise ValueError("uwsgi.ini sets cheaper = true, which needs at least 2 processes")
    return [
        ("chdir", str(package_dir(python))),
        ("http", f"{LOOPBACK}:{port}"),
        ("module", "core.wsgi:application"),
        ("master", "true"),
        ("cheaper", "true"),
        ("single-interpreter", "true"),
        ("processes", str(processes)),
        ("threads", str(threads)),
        ("vacuum", "true"),
        ("die-on-term", "true"),
        ("pidfile", str(work_dir / "uwsgi.pid")),
        ("buffer-size", "65535"),
        ("http-timeout", "300"),
        ("memory-report", "true"),
        ("auto-procname", "true"),
        ("procname-prefix", "ls-"),
        ("need-app", "true"),
        ("env", "APP_WEBSERVER=uwsgi"),
        ("ignore-sigpipe", "true"),
        ("ignore-write-errors", "true"),
        ("disable-write-exception", "true"),
        ("harakiri", str(harakiri_seconds)),
        ("harakiri-verbose", "true"),
        ("post-buffering", "4096"),
        ("disable-logging", "true"),
        ("log-5xx", "true"),
        ("enable-threads", "true"),
        ("thunder-lock", "true"),
        ("lazy-apps", "true"),
        ("max-requests", "5000"),
        ("reload-on-rss", "2048"),
        ("worker-reload-mercy", "300"),
    ]


def write_uwsgi_ini(path: Path, options: list[tuple[str, str]]) -> Path:
    # uWSGI expands $(VAR) and %(...) in ini values: none of ours carries either.
    path.write_text("[uwsgi]\n" + "".join(f"{key} = {value}\n" for key, value in options))
    return path


def process_environment(env: Mapping[str, str], data_dir: Path, database: Mapping[str, str],
                        python: Optional[str] = None) -> dict[str, str]:
    """The image's ENV, then the caller's env, then what belongs to this local process."""
    base = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return {
        **base,
        **IMAGE_ENV,
        **{str(k): str(v) for k, v in env.items()},
        # the image: LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data, a volume of the pod
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "default",
        "POSTGRE_HOST": database["PGHOST"],
        "POSTGRE_PORT": database["PGPORT"],
        "POSTGRE_USER": database["PGUSER"],
        "POSTGRE_NAME": database["PGDATABASE"],
        # the throwaway server trusts local connections; keep a caller's password if given
        "POSTGRE_PASSWORD": str(env.get("POSTGRE_PASSWORD") or database.get("PGPASSWORD") or "unused-trust-auth"),
        "GIT_CEILING_DIRECTORIES": str(package_dir(python).parent),
    }


def _run_step(name: str, command: list[str], env: dict[str, str], log_dir: Path, timeout: float,
              python: Optional[str] = None) -> None:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        try:
            result = subprocess.run(command, cwd=package_dir(python), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name} did not finish within {timeout:.0f} s; see {log_path}") from None
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{name} exited {result.returncode}\n--- last lines of {log_path} ---\n{tail}")


def prepare_database(env: dict[str, str], log_dir: Path, python: Optional[str] = None) -> None:
    """Migrations as the init container runs them, then the admin as the app's init script makes it."""
    _run_step("label-studio-migrate", [python or sys.executable, "manage.py", "locked_migrate"], env, log_dir,
              MIGRATE_SECONDS, python)
    _run_step("label-studio-init", [environment_script("label-studio", python), "init", "-q"], env, log_dir,
              INIT_SECONDS, python)


@contextlib.contextmanager
def serve_label_studio(env: Mapping[str, str], work_dir: Path, harakiri_seconds: int = 120,
                       processes: Optional[int] = None, database: Optional[Mapping[str, str]] = None,
                       ready_seconds: float = READY_SECONDS, port: Optional[int] = None,
                       python: Optional[str] = None) -> Iterator[LabelStudioServer]:
    """Serve Label Studio under uWSGI on 127.0.0.1 until the block ends.

    `env`: Label Studio's environment (e.g. the rendered app container's, with local
    replacements); `work_dir`: data directory, logs, uwsgi.ini and pidfile go there;
    `harakiri_seconds`: uWSGI kills a request running longer (the release: 120);
    `processes`: workers (default: env UWSGI_PROCESSES, else 2); `database`: the libpq
    environment of an existing database, else a throwaway PostgreSQL is started; `port`: where
    to listen (default: a free one), for callers that put the address into `env` first; `python`:
    the interpreter of another environment holding another Label Studio release (default: the
    tests' own, 1.23.2).
    Yields a LabelStudioServer (`.url`, `str()` is the URL); readiness is GET /health = 200.
    """
    work_dir = Path(work_dir)
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "data").mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        if database is None:
            database = stack.enter_context(running_postgres(log_dir))
        process_env = process_environment(env, work_dir / "data", database, python)
        prepare_database(process_env, log_dir, python)
        port = port or free_port()
        workers = processes or int(env.get("UWSGI_PROCESSES") or DEFAULT_PROCESSES)
        threads = int(env.get("UWSGI_NUMBER_OF_THREADS") or 1)
        ini = write_uwsgi_ini(work_dir / "uwsgi.ini",
                              uwsgi_options(port, harakiri_seconds, workers, threads, work_dir, python))
        uwsgi = start_process("uwsgi", [environment_script("uwsgi", python), "--ini", str(ini)], log_dir,
                              process_env)
        stack.callback(uwsgi.stop)
        url = f"http://{LOOPBACK}:{port}"
        wait_for_process_url(uwsgi, f"{url}/health", ready_seconds, expect_status=200)
        yield LabelStudioServer(url, uwsgi.log_path, ini, dict(database), uwsgi)

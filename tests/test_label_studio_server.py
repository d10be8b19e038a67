"""Label Studio under uWSGI on PostgreSQL (tests/label_studio_server.py).

The fast tests pin how the release's uwsgi.ini and the environment are reproduced; the
slow one starts the real thing and makes an authenticated API call.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.label_studio_server import (
    IMAGE_ENV,
    package_dir,
    process_environment,
    serve_label_studio,
    uwsgi_options,
    write_uwsgi_ini,
)
from tests.live_services import LOOPBACK, LabelStudioAdmin, postgres_program

DATABASE = {"PGHOST": LOOPBACK, "PGPORT": "54321", "PGUSER": "labelstudio", "PGDATABASE": "labelstudio"}


def test_the_release_options_for_a_local_process(tmp_path):
    options = dict(uwsgi_options(port=8123, harakiri_seconds=5, processes=2, threads=1, work_dir=tmp_path))
    assert options["http"] == f"{LOOPBACK}:8123"
    assert options["harakiri"] == "5"
    assert options["chdir"] == str(package_dir())
    assert options["module"] == "core.wsgi:application"
    assert options["env"] == "APP_WEBSERVER=uwsgi"
    # as the release sets them
    assert {k: options[k] for k in ("http-timeout", "buffer-size", "post-buffering", "max-requests",
                                    "reload-on-rss", "worker-reload-mercy")} == {
        "http-timeout": "300", "buffer-size": "65535", "post-buffering": "4096", "max-requests": "5000",
        "reload-on-rss": "2048", "worker-reload-mercy": "300"}
    assert all(options[k] == "true" for k in ("master", "cheaper", "need-app", "lazy-apps", "die-on-term",
                                               "harakiri-verbose", "thunder-lock", "enable-threads"))
    assert "stats" not in options and "socket" not in options
    assert Path(options["pidfile"]).parent == tmp_path


def test_cheaper_mode_needs_two_workers(tmp_path):
    with pytest.raises(ValueError, match="cheaper"):
        uwsgi_options(port=8123, harakiri_seconds=5, processes=1, threads=1, work_dir=tmp_path)


def test_the_ini_file_is_what_uwsgi_reads(tmp_path):
    ini = write_uwsgi_ini(tmp_path / "uwsgi.ini", [("master", "true"), ("harakiri", "4")])
    assert ini.read_text() == "[uwsgi]\nmaster = true\nharakiri = 4\n"


def test_the_environment_is_the_image_then_the_callers_then_the_local_process(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-test-runner")
    caller = {"LABEL_STUDIO_HOST": "https://label.dev.example.com", "POSTGRE_HOST": "in-cluster-host",
              "POSTGRE_PASSWORD": "rendered-password", "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
              "ML_TIMEOUT_SETUP": 60}
    env = process_environment(caller, tmp_path / "data", DATABASE)
    assert env["LABEL_STUDIO_HOST"] == "https://label.dev.example.com"
    assert env["ML_TIMEOUT_SETUP"] == "60"
    assert env["DJANGO_SETTINGS_MODULE"] == IMAGE_ENV["DJANGO_SETTINGS_MODULE"]
    # the database belongs to the local process; the caller's password is kept
    assert (env["POSTGRE_HOST"], env["POSTGRE_PORT"], env["POSTGRE_PASSWORD"]) == (LOOPBACK, "54321",
                                                                                 "rendered-password")
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path / "data")
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.slow
def test_label_studio_answers_an_authenticated_call_under_uwsgi_on_postgresql(tmp_path):
    admin = LabelStudioAdmin.generate()
    env = {
        "LABEL_STUDIO_USERNAME": admin.email,
        "LABEL_STUDIO_PASSWORD": admin.password,
        "LABEL_STUDIO_USER_TOKEN": admin.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SECRET_KEY": "test-only-django-secret-key-0123456789abcdef",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
    }
    with serve_label_studio(env, tmp_path, harakiri_seconds=5) as server:
        request = urllib.request.Request(f"{server.url}/api/current-user/whoami",
                                         headers={"Authorization": f"Token {admin.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert json.loads(response.read())["email"] == admin.email
        wrong = urllib.request.Request(f"{server.url}/api/projects/", headers={"Authorization": "Token not-the-token"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=30)
        assert refused.value.code == 401

        log = server.log_path.read_text(errors="replace")
        assert "spawned uWSGI master process" in log and "uWSGI http bound on" in log
        assert "harakiri = 5\n" in server.uwsgi_ini.read_text()
        # the admin lives in the throwaway PostgreSQL, not in an SQLite file
        users = subprocess.run([postgres_program("psql"), "-At", "-c", "select email from htx_user"],
                               env={**os.environ, **server.database}, capture_output=True, text=True, check=True)
        assert users.stdout.split() == [admin.email]
        assert not list(tmp_path.rglob("*.sqlite3"))
    assert not server.process.is_running()

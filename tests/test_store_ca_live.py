"""An https store behind a private CA, live: moto serving S3 over https with a certificate a
CA made at test time signs (tests/private_ca.py), Label Studio 1.23.2 as the image serves it
(uWSGI, PostgreSQL, the rendered app env), and the reconciler as the Job runs it.

The stack is evaluated with `storage.caBundle` holding that CA. In the cluster each client
reads the bundle from the ConfigMap mounted at STORE_CA_FILE; here the same PEM sits in the
test's directory and the variables the stack sets (AWS_CA_BUNDLE for Label Studio,
SSL_CERT_FILE for the reconciler) name that file instead: the same bytes at another path,
read by the same libraries. Nothing else trusts the CA, so a sync that succeeds proves
Label Studio's boto3 used it, and the reconciler run without it shows its probe needs it.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from components.storage import STORE_CA_FILE
from tests.app_environment import rendered_app_container
from tests.live_services import BrowserSession, s3_client, start_moto, upload_images
from tests.live_stack import job_environment, label_studio_stack, run_job
from tests.private_ca import issue

pytestmark = pytest.mark.slow

BUCKET = "onprem-images"
PREFIX = "scans"
IMAGE_COUNT = 6
TITLE = "Scans behind the company CA"
CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="choice" toName="image"><Choice value="ok"/><Choice value="damaged"/></Choices></View>')


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return issue(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, certificate):
    work_dir = tmp_path_factory.mktemp("store-ca")
    (work_dir / "logs").mkdir()
    moto, endpoint = start_moto(work_dir / "logs",
                                tls=(certificate.ca_file, certificate.cert_file, certificate.key_file))
    try:
        keys = {PREFIX: upload_images(endpoint, BUCKET, PREFIX, IMAGE_COUNT, verify=str(certificate.ca_file))}
        with label_studio_stack(work_dir, endpoint, BUCKET, keys,
                                overrides={"storage.caBundle": certificate.ca_file.read_text()},
                                extra_env={"AWS_CA_BUNDLE": str(certificate.ca_file)}) as started:
            yield started
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def document(stack) -> dict:
    config_map = stack.evaluation.one("kubernetes:core/v1:ConfigMap", "labeling-configuration-configmap")
    generated = json.loads(config_map.inputs["data"]["desired.json"])
    return {**generated, "samUrl": None, "members": [],
            "projects": [{"title": TITLE, "labelConfig": CONFIG, "prefix": PREFIX,
                          "regexFilter": ".*\\.png$", "sam": False}]}


def test_the_stack_points_each_client_at_the_mounted_bundle(stack):
    assert stack.s3_endpoint.startswith("https://")
    rendered = {e["name"]: e.get("value") for e in rendered_app_container(stack.evaluation)["env"]}
    assert rendered["AWS_CA_BUNDLE"] == STORE_CA_FILE
    job = stack.evaluation.one("kubernetes:batch/v1:Job", "labeling-configuration-job").inputs["spec"]["template"][
        "spec"]["containers"][0]
    assert {"name": "SSL_CERT_FILE", "value": STORE_CA_FILE} in job["env"]


def test_without_the_ca_the_reconciler_cannot_reach_the_store(stack, document, tmp_path):
    result = run_job(tmp_path, document, job_environment(stack.label_studio_url, stack.admin.token))
    assert result.returncode != 0
    assert f"S3 endpoint {stack.s3_endpoint} is unreachable" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def synced(stack, document, tmp_path_factory):
    env = {**job_environment(stack.label_studio_url, stack.admin.token),
           "SSL_CERT_FILE": stack.environment["AWS_CA_BUNDLE"]}
    return run_job(tmp_path_factory.mktemp("job"), document, env)


def test_with_the_ca_the_store_is_reachable_and_every_image_becomes_a_task(stack, synced):
    assert synced.returncode == 0, synced.stderr
    lines = synced.stdout.splitlines()
    assert f"s3 endpoint {stack.s3_endpoint}: reachable" in lines
    assert any(line.startswith(f'project "{TITLE}": source storage s3://{BUCKET}/{PREFIX}: synced {IMAGE_COUNT} tasks')
               for line in lines), lines


def test_label_studio_streams_the_images_from_the_https_store(stack, synced):
    """presign false (a loopback store): Label Studio's own boto3 fetches each image, over https."""
    assert synced.returncode == 0, synced.stderr
    browser = BrowserSession(stack.label_studio_url).log_in(stack.admin.email, stack.admin.password)
    status, body, _ = browser.get("/api/projects/")
    [project] = [p for p in json.loads(body)["results"] if p["title"] == TITLE]
    status, body, _ = browser.get(f"/api/tasks/?project={project['id']}&page_size=1")
    listing = json.loads(body)
    [task] = listing["tasks"] if isinstance(listing, dict) else listing
    image_url = task["data"]["image"]
    fileuri = urllib.parse.parse_qs(urllib.parse.urlsplit(image_url).query)["fileuri"][0]
    key = base64.b64decode(fileuri).decode().removeprefix(f"s3://{BUCKET}/")
    status, image, _ = browser.get(image_url.removeprefix(stack.label_studio_url))
    stored = s3_client(stack.s3_endpoint, verify=stack.environment["AWS_CA_BUNDLE"]).get_object(Bucket=BUCKET, Key=key)
    assert status == 200 and image == stored["Body"].read() and image.startswith(b"\x89PNG")

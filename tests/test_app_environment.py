"""The live tests' Label Studio runs with the env of the rendered app container, changed
only where tests/app_environment.py's table says."""

from __future__ import annotations

from components.chart_values import banned_subnets_except
from reconciler.contract import SAM_SERVICE_NAME
from tests.app_environment import LocalValues, app_environment, local_stack, rendered_app_container
from tests.live_services import SAM_STUB_ADDRESS
from tools.stack_eval import mock_cluster_ip

LOCAL = LocalValues(public_url="http://127.0.0.1:8080", s3_endpoint="http://127.0.0.1:9000", bucket="live-tests",
                    admin_email="admin@example.com", admin_password="pw-made-for-this-run",
                    admin_token="0123456789abcdef0123456789abcdef01234567", s3_access_key_id="AKIAMOTO",
                    s3_secret_access_key="moto-secret")


def test_only_the_listed_values_differ_from_the_rendered_container():
    evaluation = local_stack(LOCAL)
    rendered = {e["name"]: e for e in rendered_app_container(evaluation)["env"]}
    env = app_environment(evaluation, LOCAL)
    assert set(env) - set(rendered) == {"USE_NGINX_FOR_UPLOADS"}
    for name, variable in rendered.items():
        if "value" in variable and name != "USER_ADDITIONAL_BANNED_SUBNETS":
            assert env[name] == str(variable["value"]), name
    assert (env["LABEL_STUDIO_USERNAME"], env["LABEL_STUDIO_PASSWORD"], env["LABEL_STUDIO_USER_TOKEN"]) == (
        LOCAL.admin_email, LOCAL.admin_password, LOCAL.admin_token)
    assert (env["STORAGE_AWS_ACCESS_KEY_ID"], env["STORAGE_AWS_SECRET_ACCESS_KEY"]) == ("AKIAMOTO", "moto-secret")
    assert env["STORAGE_AWS_ENDPOINT_URL"] == LOCAL.s3_endpoint and env["STORAGE_AWS_BUCKET_NAME"] == LOCAL.bucket


def test_the_stack_itself_points_label_studio_at_the_local_addresses():
    env = app_environment(local_stack(LOCAL), LOCAL)
    assert env["LABEL_STUDIO_HOST"] == env["CSRF_TRUSTED_ORIGINS"] == LOCAL.public_url
    assert env["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert env["LATEST_VERSION_CHECK"] == env["COLLECT_ANALYTICS"] == "false" and env["SENTRY_DSN"] == ""


def test_ssrf_protection_is_on_and_only_the_sam_stand_in_leaves_the_banned_subnets():
    evaluation = local_stack(LOCAL)
    rendered = {e["name"]: e.get("value") for e in rendered_app_container(evaluation)["env"]}
    env = app_environment(evaluation, LOCAL)
    assert "SSRF_PROTECTION_ENABLED" not in env and "ML_BLOCK_LOCAL_IP" not in env
    assert env["S3_ENDPOINT"] == LOCAL.s3_endpoint and env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    # The cluster's list and this one differ only in the address cut out of Label Studio's own.
    cluster_ip = next(mock_cluster_ip(r.name) for r in evaluation.of_type("kubernetes:core/v1:Service")
                      if r.inputs["metadata"]["name"] == SAM_SERVICE_NAME)
    assert rendered["USER_ADDITIONAL_BANNED_SUBNETS"] == banned_subnets_except(cluster_ip)
    assert env["USER_ADDITIONAL_BANNED_SUBNETS"] == banned_subnets_except(SAM_STUB_ADDRESS)

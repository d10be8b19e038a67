"""The `labelStudio` section: the Helm release, its first-boot admin and its address."""

from __future__ import annotations

from typing import Optional

from components.settings.checks import check_dns_label, check_email, check_http_origin, check_semver, is_semver
from components.settings.database import read_database
from components.settings.model import IngressSettings, LabelStudioSettings, Resources
from components.settings.reader import Section, read_resources

# The chart and application versions this stack was built and verified against.
DEFAULT_CHART_VERSION = "2.0.5"
DEFAULT_LABEL_STUDIO_IMAGE_TAG = "1.23.2"
DEFAULT_RELEASE_NAME = "label-studio"
PORT_FORWARD_URL = "http://localhost:8080"


def _check_release_name(text: str) -> Optional[str]:
    problem = check_dns_label(text)
    if problem:
        return problem
    if len(text) > 40:
        return "is too long; expected at most 40 characters so the chart's object names stay within 63"
    if "postgresql" in text:
        return "contains 'postgresql'; the chart derives the database host from the release name and breaks on it"
    return None


def _check_image_tag(text: str) -> Optional[str]:
    if text == "latest" or not is_semver(text):
        return "is not a pinned release; expected an exact version like 1.23.2 (never latest)"
    return None


def _default_public_url(ingress: IngressSettings) -> str:
    if ingress.enabled and ingress.host:
        return f"{'https' if ingress.tls else 'http'}://{ingress.host}"
    return PORT_FORWARD_URL


def read_label_studio(section: Section, ingress: IngressSettings, secret_keys: frozenset[str],
                      production: bool) -> LabelStudioSettings:
    release = section.string("releaseName", "Helm release name; names every chart object (`<release>-ls-app`).",
                             DEFAULT_RELEASE_NAME, check=_check_release_name, kind="DNS label")
    chart_version = section.string("chartVersion", "heartex/label-studio chart version, pinned.",
                                   DEFAULT_CHART_VERSION, check=check_semver, kind="exact version")
    image_tag = section.string("imageTag", "heartexlabs/label-studio image tag, pinned.",
                               DEFAULT_LABEL_STUDIO_IMAGE_TAG, check=_check_image_tag, kind="exact version")
    replicas = section.integer("replicas", "Label Studio app pods.", 1, minimum=1, maximum=20)
    resources = read_resources(
        section.section("resources", "Requests and limits of each Label Studio app pod."),
        Resources({"cpu": "1000m", "memory": "1Gi"}, {"cpu": "4000m", "memory": "6144Mi"}),
        # The chart's values.schema.json admits only these two under app.resources.
        ("cpu", "memory"),
    )
    admin_email = section.string("adminEmail", "Email of the first-boot administrator account.",
                                 required=True, check=check_email, kind="email")
    public_url = section.string(
        "publicUrl",
        f"Address people open (default https://<ingress.host>, or {PORT_FORWARD_URL} through kubectl port-forward).",
        check=check_http_origin, kind="URL origin",
    )
    database = read_database(section.section("database", "Label Studio's PostgreSQL database."), secret_keys, production)
    confirm_downgrade_from = section.string(
        "confirmDowngradeFrom", "The deployed Label Studio version a move to an older imageTag leaves, set once the "
        "backup taken before that version is restored; without it `pulumi up` refuses the downgrade.",
        check=check_semver, kind="exact version")
    section.finish()
    if image_tag and image_tag != DEFAULT_LABEL_STUDIO_IMAGE_TAG:
        # A staged upgrade: one stack moves first. Allowed, and said plainly, since everything the
        # platform tells Label Studio (chart values, reconciler calls, banned subnets) is proven on one release.
        section.problems.warnings.append(
            f"{section.key('imageTag')}: {image_tag} is untested; the tests run Label Studio "
            f"{DEFAULT_LABEL_STUDIO_IMAGE_TAG} (chart values, reconciler, SSRF list): move one stage first and "
            "watch the reconciler's Job")
    return LabelStudioSettings(release or DEFAULT_RELEASE_NAME, chart_version, image_tag, replicas, resources,
                               admin_email or "", public_url or _default_public_url(ingress), database,
                               confirm_downgrade_from)

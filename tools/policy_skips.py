"""Policy-pack findings on the objects the Helm release renders that the platform accepts on
purpose, each scoped to the rendered object and container, and the stacks, with its reason.

Only rendered objects can be listed here (tools.policy_check matches skips against them
alone): every resource the program declares still gets every rule. Resources are named
as `Kind.namespace.name/container` (fnmatch patterns). A skip that matches no finding
any more fails tests/test_policies.py.
"""

from __future__ import annotations

from tools.checkov_skips import ScopedCheck

# The chart's sidecar and init container; the app container keeps the rule (its requests and
# limits are labelStudio.resources, values app.resources).
CHART_APP_SIDECARS = ("Deployment.*.label-studio-ls-app/nginx", "Deployment.*.label-studio-ls-app/db-migrations")

POLICY_SKIPS = [
    ScopedCheck("k8s-container-resources-set", CHART_APP_SIDECARS,
                "the chart renders its nginx sidecar and db-migrations init container with empty requests and "
                "limits unless app.nginx.resources / app.initContainer.resources are set, and the stack does not "
                "set them yet (a change of the running pods, for the stack's own settings)"),
]

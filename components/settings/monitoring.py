"""The `monitoring` section: alerts for the Prometheus Operator (components/monitoring.py)."""

from __future__ import annotations

import re
from typing import Optional

from components.settings.checks import check_label_key, check_label_value
from components.settings.model import MonitoringSettings
from components.settings.reader import Section

# The page in the repository: where the team finds it whatever its Git host's web view is.
DEFAULT_RUNBOOK_URL = "docs/operations.md"
DEFAULT_MISSED_RECONCILES = 3
_URL_OR_PATH = re.compile(r"^[^\s#]+$")


def _check_runbook_url(text: str) -> Optional[str]:
    if not _URL_OR_PATH.match(text):
        return "is not a URL without a fragment; expected e.g. https://git.example.com/platform/labeling-platform/blob/main/docs/operations.md"
    return None


def read_monitoring(section: Section) -> MonitoringSettings:
    enabled = section.boolean("enabled", "Declare a PrometheusRule with the platform's alerts (the cluster runs the "
                              "Prometheus Operator and kube-state-metrics).", False)
    rule_labels = section.string_map("ruleLabels", "Labels on the PrometheusRule that the cluster's Prometheus selects "
                                     "rules by (its ruleSelector; kube-prometheus-stack: release: <its release>).",
                                     key_check=check_label_key, value_check=check_label_value)
    runbook_url = section.string("runbookUrl", "docs/operations.md as the team reads it (e.g. its page on the Git "
                                 "host); each alert links to its section there.", DEFAULT_RUNBOOK_URL,
                                 check=_check_runbook_url, kind="URL")
    missed = section.integer("missedReconciles", "How many intervals of the scheduled reconcile may pass without a "
                             "successful run before an alert.", DEFAULT_MISSED_RECONCILES, minimum=1, maximum=48)
    section.finish()
    if not enabled:
        # Switching monitoring off is one key: the rest of the section waits for it to come back.
        section.inapplicable(("ruleLabels", "runbookUrl", "missedReconciles"), "while monitoring.enabled is false")
    return MonitoringSettings(bool(enabled), rule_labels, runbook_url or DEFAULT_RUNBOOK_URL, missed)

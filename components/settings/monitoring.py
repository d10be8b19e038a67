"""The `monitoring` section: alerts for the Prometheus Operator (components/monitoring.py)."""

from __future__ import annotations

import re
from typing import Optional

from components.settings.checks import check_dns_label, check_label_key, check_label_value
from components.settings.model import MonitoringSettings, SamSettings
from components.settings.reader import Section

# The page in the repository: where the team finds it whatever its Git host's web view is.
DEFAULT_RUNBOOK_URL = "docs/operations.md"
DEFAULT_MISSED_RECONCILES = 3
# kube-prometheus-stack's usual home.
DEFAULT_PROMETHEUS_NAMESPACE = "monitoring"
# A click on an image whose features are cached takes about 0.1 s on a CPU; one that embeds the
# image first about 3 s on a CPU and well under 1 s on a GPU. Past 5 s a labeler is waiting.
DEFAULT_SAM_CLICK_P95_SECONDS = 5
# The click histogram's top bucket is 32 s (sam-server/sam_server/metrics.py): a 95th percentile
# beyond it reads as 32 s, so a threshold at or above it could never fire.
MAX_SAM_CLICK_P95_SECONDS = 30
# Each queued click waits for the embeddings ahead of it (about 3 s each on a CPU): with more
# than 4 queued, the last one waits 15 s or more.
DEFAULT_SAM_QUEUED_CLICKS = 4
# Keys that only matter while the platform's SAM server runs: the upstream examples export no metrics.
SAM_SERVER_KEYS = ("prometheusNamespace", "samClickP95Seconds", "samQueuedClicks")
_URL_OR_PATH = re.compile(r"^[^\s#]+$")


def _check_runbook_url(text: str) -> Optional[str]:
    if not _URL_OR_PATH.match(text):
        return "is not a URL without a fragment; expected e.g. https://git.example.com/platform/labeling-platform/blob/main/docs/operations.md"
    return None


def read_monitoring(section: Section, sam: SamSettings) -> MonitoringSettings:
    enabled = section.boolean("enabled", "Declare a PrometheusRule with the platform's alerts (the cluster runs the "
                              "Prometheus Operator and kube-state-metrics), and a PodMonitor of the platform's SAM "
                              "server.", False)
    rule_labels = section.string_map("ruleLabels", "Labels on the PrometheusRule and the PodMonitor that the cluster's "
                                     "Prometheus selects them by (its ruleSelector and podMonitorSelector; "
                                     "kube-prometheus-stack: release: <its release>).",
                                     key_check=check_label_key, value_check=check_label_value)
    runbook_url = section.string("runbookUrl", "docs/operations.md as the team reads it (e.g. its page on the Git "
                                 "host); each alert links to its section there.", DEFAULT_RUNBOOK_URL,
                                 check=_check_runbook_url, kind="URL")
    missed = section.integer("missedReconciles", "How many intervals of the scheduled reconcile may pass without a "
                             "successful run before an alert.", DEFAULT_MISSED_RECONCILES, minimum=1, maximum=48)
    prometheus_namespace = section.string(
        "prometheusNamespace", "Namespace of the cluster's Prometheus: the platform's SAM server (sam.model sam2.1-*) "
        "lets its pods (app.kubernetes.io/name: prometheus) scrape its metrics port.", DEFAULT_PROMETHEUS_NAMESPACE,
        check=check_dns_label, kind="DNS label")
    click_p95 = section.integer("samClickP95Seconds", "The platform's SAM server: alert when 5% of the team's clicks "
                                "take longer than this many seconds.", DEFAULT_SAM_CLICK_P95_SECONDS, minimum=1,
                                maximum=MAX_SAM_CLICK_P95_SECONDS)
    queued = section.integer("samQueuedClicks", "The platform's SAM server: alert when more clicks than this wait for "
                             "an embedding on one replica.", DEFAULT_SAM_QUEUED_CLICKS, minimum=1, maximum=100)
    section.finish()
    if not enabled:
        # Switching monitoring off is one key: the rest of the section waits for it to come back.
        section.inapplicable(("ruleLabels", "runbookUrl", "missedReconciles", *SAM_SERVER_KEYS),
                             "while monitoring.enabled is false")
    elif not (sam.enabled and sam.model.platform_server):
        section.inapplicable(SAM_SERVER_KEYS, "unless SAM runs the platform's server (sam.model sam2.1-*): the "
                                              "upstream examples export no metrics")
    return MonitoringSettings(bool(enabled), rule_labels, runbook_url or DEFAULT_RUNBOOK_URL, missed,
                              prometheus_namespace or DEFAULT_PROMETHEUS_NAMESPACE, click_p95, queued)

"""Entry point the Pulumi CLI runs for `--policy-pack policy`: constructing the pack serves it (and blocks)."""

from pulumi_policy import EnforcementLevel, PolicyPack

from guardrails import ALL_POLICIES

PolicyPack("labeling-platform-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=ALL_POLICIES)

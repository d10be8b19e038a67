"""The in-cluster reconciler: makes Label Studio match the stack's desired state.

Standard library only, so a plain Python image runs it without a pip step. The Job
mounts these modules from a ConfigMap and runs `python -m reconciler <desired.json>`.

    contract.py   what the stack and the reconciler share (desired state, environment)
    client.py     the Label Studio API client
    projects.py   health, token, projects, the SAM backend
    sam_pods.py   why the SAM pods cannot start, from their status and events
    storages.py   source and export storages, the sync
    team.py       the team Secret: the invite link and the record of created accounts
    members.py    accounts through the invite sign-up, removal when delisted
    tabs.py       Data Manager tabs splitting a project's tasks among members
    reconcile.py  one whole run (or --export-resync), and the command line
    restore.py    `python -m reconciler.restore`: exported annotations back into Label Studio
    active_hours.py  sam.activeHours: the windows, judged against an injected clock
    kubernetes_api.py  the Kubernetes API with the pod's service-account token
    sam_scale.py  `python -m reconciler.sam_scale`: the SAM Deployment's replicas for the windows
"""

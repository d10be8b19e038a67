"""Pulumi program: read this stack's settings, build the platform, export what users need."""

import pulumi

from components.label_studio import DEPLOYED_RELEASE_OUTPUT
from components.platform import LabelingPlatform
from components.settings import ConfigError, load_settings

try:
    settings = load_settings()
except ConfigError as error:
    # A clean, complete list of mistakes instead of a traceback, before any resource exists.
    raise pulumi.RunError(error.message()) from None

for warning in settings.warnings:
    pulumi.log.warn(warning)

platform = LabelingPlatform("labeling", settings)
label_studio = platform.label_studio

pulumi.export("url", platform.url)
pulumi.export("adminEmail", label_studio.admin_email)
pulumi.export("adminPassword", label_studio.admin_password)
pulumi.export("adminApiToken", label_studio.admin_token)
pulumi.export("bucketName", platform.storage.access.bucket)
pulumi.export("samBackendUrl", platform.sam.url if platform.sam else None)
pulumi.export("teamInviteUrl", platform.labeling.invite_url)
pulumi.export("memberPasswords", platform.labeling.member_passwords)
pulumi.export("databaseHost", label_studio.database.host)
pulumi.export("databasePort", label_studio.database.port)
pulumi.export("databaseName", label_studio.database.name)
pulumi.export("preUpgradeBackup", label_studio.pre_upgrade_backup.summary)
# Read back by the next update (LabelStudio's downgrade check).
pulumi.export(DEPLOYED_RELEASE_OUTPUT, label_studio.release_versions)
pulumi.export("kubectlLogs", platform.log_commands)

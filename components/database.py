"""Label Studio's PostgreSQL outside the cluster: an RDS instance the stack owns.

Survives what the in-cluster StatefulSet does not: a lost node (Multi-AZ standby), a lost
zone, a bad upgrade (automated backups, point-in-time restore) and a mistaken `pulumi
destroy` in a protected stack (protect, retain, deletion protection, final snapshot).
Reachable only from the cluster, only over TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.conventions import PART_OF, SecretKeyRef, child_of
from components.network import ANYWHERE, Rule, to_networks
from components.settings import DatabaseSettings

POSTGRES_PORT = 5432
# Inside the cluster the app authenticates with a password over TLS; `require` encrypts
# every connection (the parameter group refuses plain ones) without shipping the RDS CA.
APP_SSL_MODE = "require"
BACKUP_WINDOW = "02:00-03:00"
MAINTENANCE_WINDOW = "sun:04:00-sun:05:00"


@dataclass(frozen=True)
class DatabaseLocation:
    """Where a PostgreSQL database is and whom to log in as."""

    host: pulumi.Input[str]
    port: int
    name: str
    user: str
    # Where pods may connect to reach it (a NetworkPolicy egress rule).
    egress: Rule


@dataclass(frozen=True)
class DatabaseConnection(DatabaseLocation):
    """A database the chart does not run itself (external or RDS), with its password's value,
    which goes into the platform Secret."""

    password: pulumi.Output
    ssl_mode: Optional[str]
    # The RDS instance's identifier when the stack owns the server (snapshots name it).
    rds_instance: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class DatabaseAccess(DatabaseLocation):
    """Label Studio's database as a pod connects to it (the backup CronJob): the password by reference."""

    password: SecretKeyRef


def external_connection(settings: DatabaseSettings) -> DatabaseConnection:
    """The operator's own server (mode external), as configured."""
    return DatabaseConnection(host=settings.host, port=settings.port, name=settings.name, user=settings.user,
                              egress=to_networks(settings.egress_cidrs or (ANYWHERE,), [settings.port]),
                              password=settings.password, ssl_mode=settings.ssl_mode)


def parameter_group_family(engine_version: str) -> str:
    return f"postgres{engine_version.split('.')[0]}"


@dataclass(frozen=True)
class ManagedDatabaseArgs:
    settings: DatabaseSettings
    protect: bool


class ManagedDatabase(pulumi.ComponentResource):
    """Subnet group, security group, SSL-only parameter group and the encrypted instance.

    Needs the AWS provider (`opts.providers`).
    """

    connection: DatabaseConnection

    def __init__(self, name: str, args: ManagedDatabaseArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("labeling:database:ManagedDatabase", name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="labeling:database:Postgres", name="database")])))
        database = args.settings
        rds = database.rds

        # A new password would not reach the existing instance's data without an
        # explicit rotation, so it is as protected as the instance.
        password = random.RandomPassword(
            f"{name}-master-password", length=32, special=False,
            opts=child_of(self, "master-password", protect=args.protect))
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=list(rds.subnet_ids),
            description="Private subnets of Label Studio's database", opts=child_of(self, "subnets"))
        firewall = aws.ec2.SecurityGroup(
            f"{name}-security-group", vpc_id=rds.vpc_id,
            description="PostgreSQL for Label Studio: 5432 from the cluster only", opts=child_of(self, "postgres"))
        for index, group in enumerate(rds.allowed_security_group_ids):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-from-group-{index}", security_group_id=firewall.id, ip_protocol="tcp",
                from_port=POSTGRES_PORT, to_port=POSTGRES_PORT, referenced_security_group_id=group,
                opts=child_of(self, f"postgres-from-group-{index}"))
        for index, cidr in enumerate(rds.allowed_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-from-cidr-{index}", security_group_id=firewall.id, ip_protocol="tcp",
                from_port=POSTGRES_PORT, to_port=POSTGRES_PORT, cidr_ipv4=cidr,
                opts=child_of(self, f"postgres-from-cidr-{index}"))
        parameters = aws.rds.ParameterGroup(
            f"{name}-ssl-only", family=parameter_group_family(rds.engine_version),
            description="Refuse connections without TLS",
            parameters=[{"name": "rds.force_ssl", "value": "1"}], opts=child_of(self, "ssl-only"))

        instance = aws.rds.Instance(
            f"{name}-instance",
            engine="postgres",
            engine_version=rds.engine_version,
            # Set only to restore: the instance is created from the snapshot's data.
            snapshot_identifier=rds.snapshot_identifier,
            instance_class=rds.instance_class,
            allocated_storage=rds.allocated_storage_gb,
            max_allocated_storage=rds.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=database.name,
            username=database.user,
            password=password.result,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[firewall.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=rds.multi_az,
            backup_retention_period=rds.backup_retention_days,
            backup_window=BACKUP_WINDOW,
            maintenance_window=MAINTENANCE_WINDOW,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            # Major upgrades change the on-disk format: a reviewed, backed-up step, never implicit.
            allow_major_version_upgrade=False,
            enabled_cloudwatch_logs_exports=["postgresql"],
            deletion_protection=args.protect,
            skip_final_snapshot=not args.protect,
            final_snapshot_identifier=f"{pulumi.get_project()}-{pulumi.get_stack()}-final" if args.protect else None,
            delete_automated_backups=not args.protect,
            tags=dict(PART_OF),
            opts=child_of(self, "postgres", protect=args.protect, retain_on_delete=args.protect),
        )
        # The instance's address lies in its subnets: the pods' egress is to them, on 5432.
        # Written out rather than through network.to_networks: the CIDRs are Outputs here, and
        # a VPC subnet never holds the link-local range that function cuts out.
        subnet_cidrs = [aws.ec2.get_subnet_output(id=subnet, opts=pulumi.InvokeOutputOptions(parent=self)).cidr_block
                        for subnet in rds.subnet_ids]
        self.connection = DatabaseConnection(
            host=instance.address, port=POSTGRES_PORT, name=database.name, user=database.user,
            egress={"to": [{"ipBlock": {"cidr": cidr}} for cidr in subnet_cidrs],
                    "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}]},
            password=password.result, ssl_mode=APP_SSL_MODE, rds_instance=instance.identifier)
        self.register_outputs({"address": instance.address, "port": POSTGRES_PORT, "name": database.name})

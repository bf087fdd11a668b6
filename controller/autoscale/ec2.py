"""The EC2 driver (boto3): one instance per worker, started with a boot script, terminated after.

The instance installs trainyard, runs ``trainyard worker --name <worker> --queue <queue>`` and
powers off when the worker exits (``InstanceInitiatedShutdownBehavior=terminate``), like ClearML's
AWS driver. The Redis URL reaches the instance in its user data: give the autoscaler a Redis user
whose password only workers need (``TRAINYARD_REDIS_URL`` of the service, or ``redis_url``).
Credentials come from boto3's usual chain (environment, profile, instance role), never from the
task's parameters.
"""

from __future__ import annotations

import base64
import shlex

from ...queues.scalestore import Resource
from .drivers import worker_argv

TAG = "trainyard-worker"


def boot_script(resource: Resource, worker: str, queue: str, redis_url: str) -> str:
    """The user-data script: every value quoted for the shell, nothing spliced in raw."""
    options = resource.ec2
    assert options is not None
    argv = " ".join(
        shlex.quote(a)
        for a in worker_argv(resource.model_copy(update={"worker_command": ["trainyard"]}), worker, queue)
    )
    lines = [
        "#!/bin/bash",
        "set -e",
        "command -v pip3 >/dev/null || (apt-get update -qq && apt-get install -y -qq python3-pip)"
        " || dnf install -y python3-pip",
        f"pip3 install {shlex.quote(options.pip_spec)}",
        *options.setup,
        f"export TRAINYARD_REDIS_URL={shlex.quote(redis_url)}",
        *(f"export {k}={shlex.quote(v)}" for k, v in resource.env.items() if k.isidentifier()),
        f"{argv} || true",
        "shutdown -h now",
    ]
    return "\n".join(lines) + "\n"


class Ec2Driver:
    def __init__(self, redis_url: str, client=None):
        self.redis_url = redis_url
        self._clients: dict[str, object] = {}
        self._given = client

    def client(self, region: str):
        if self._given is not None:
            self._clients.setdefault(region, self._given)
            return self._given
        if region not in self._clients:
            import boto3

            self._clients[region] = boto3.client("ec2", region_name=region)
        return self._clients[region]

    def spin_up(self, resource: Resource, worker: str, queue: str) -> str:
        options = resource.ec2
        assert options is not None
        request = {
            "ImageId": options.ami_id,
            "InstanceType": options.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": boot_script(resource, worker, queue, self.redis_url),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": TAG, "Value": worker}, {"Key": "Name", "Value": worker}]
                    + [{"Key": k, "Value": v} for k, v in options.tags.items()],
                }
            ],
        }
        if options.subnet_id:
            request["SubnetId"] = options.subnet_id
        if options.key_name:
            request["KeyName"] = options.key_name
        if options.security_group_ids:
            request["SecurityGroupIds"] = options.security_group_ids
        if options.spot:
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        reply = self.client(options.region).run_instances(**request)
        return f"{options.region}/{reply['Instances'][0]['InstanceId']}"

    def spin_down(self, cloud_id: str) -> None:
        region, instance_id = cloud_id.split("/", 1)
        import botocore.exceptions

        try:
            self.client(region).terminate_instances(InstanceIds=[instance_id])
        except botocore.exceptions.ClientError as exc:
            if "InvalidInstanceID" not in str(exc):
                raise

    def _described(self, region: str, instance_ids: list[str] | None = None) -> list[dict]:
        filters = [
            {"Name": "tag-key", "Values": [TAG]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
        kwargs = {"Filters": filters} | ({"InstanceIds": instance_ids} if instance_ids else {})
        found = []
        for page in self.client(region).get_paginator("describe_instances").paginate(**kwargs):
            for reservation in page["Reservations"]:
                found += reservation["Instances"]
        return found

    def list(self) -> list[str]:
        """Instances tagged as trainyard workers in the regions this driver has started some in."""
        regions = sorted(self._clients) or ["us-east-1"]
        return [f"{r}/{i['InstanceId']}" for r in regions for i in self._described(r)]

    def alive(self, cloud_id: str) -> bool:
        region, instance_id = cloud_id.split("/", 1)
        import botocore.exceptions

        try:
            return bool(self._described(region, [instance_id]))
        except botocore.exceptions.ClientError:
            return False

    def console_log(self, cloud_id: str) -> str:
        region, instance_id = cloud_id.split("/", 1)
        output = self.client(region).get_console_output(InstanceId=instance_id).get("Output") or ""
        try:
            return base64.b64decode(output).decode(errors="replace")
        except ValueError:
            return output

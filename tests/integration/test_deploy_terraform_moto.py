"""`terraform apply` of infra/ against moto_server, checked with boto3, then `terraform destroy`.

About two minutes: marked `slow` (deselect locally with `-m "not slow"`; CI runs it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from scripts import tf_moto

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]


@dataclass
class Deployment:
    workspace: tf_moto.Workspace
    endpoint: str
    outputs: dict[str, Any]

    def client(self, service: str) -> Any:
        session = boto3.session.Session()
        return session.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=tf_moto.REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("tf-moto")
    with tf_moto.moto_server(log_path=root / "moto.log") as endpoint:
        ws = tf_moto.workspace(root, endpoint, {"things": ["CP1"], "max_tasks": 4})
        ws.terraform("init", "-input=false", "-backend=false")
        ws.terraform("apply", "-input=false", "-auto-approve")
        yield Deployment(ws, endpoint, ws.outputs())
        ws.terraform("destroy", "-input=false", "-auto-approve")
        assert ws.state_resources() == [], "destroy left resources in the state"


def test_outputs_give_the_websocket_url_and_iot_endpoint(deployment: Deployment) -> None:
    load_balancers = deployment.client("elbv2").describe_load_balancers()["LoadBalancers"]
    (load_balancer,) = load_balancers
    assert deployment.outputs["websocket_url"] == f"ws://{load_balancer['DNSName']}"
    assert deployment.outputs["iot_endpoint"].endswith("-ats.iot.us-east-1.amazonaws.com")


def test_network_load_balancer_forwards_tcp_80_to_tasks_on_8080(deployment: Deployment) -> None:
    elbv2 = deployment.client("elbv2")
    (load_balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    assert load_balancer["Type"] == "network"
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=load_balancer["LoadBalancerArn"])[
        "Listeners"
    ]
    assert (listener["Port"], listener["Protocol"]) == (80, "TCP")
    (group,) = elbv2.describe_target_groups()["TargetGroups"]
    assert (group["Port"], group["Protocol"], group["TargetType"]) == (8080, "TCP", "ip")
    assert (group["HealthCheckProtocol"], group["HealthCheckPath"]) == ("HTTP", "/health")


def test_vpc_has_public_and_private_subnets_behind_nat(deployment: Deployment) -> None:
    ec2 = deployment.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["ocpp-gateway"]}])
    (vpc,) = vpcs["Vpcs"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    tiers = sorted(
        tag["Value"] for s in subnets["Subnets"] for tag in s["Tags"] if tag["Key"] == "Tier"
    )
    assert tiers == ["private", "private", "public", "public"]
    nat = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    assert len(nat["NatGateways"]) == 1


def test_fargate_service_runs_the_task_definition(deployment: Deployment) -> None:
    ecs = deployment.client("ecs")
    (service,) = ecs.describe_services(
        cluster=deployment.outputs["ecs_cluster"], services=[deployment.outputs["ecs_service"]]
    )["services"]
    assert service["launchType"] == "FARGATE"
    assert service["desiredCount"] == 1
    assert service["loadBalancers"][0]["containerPort"] == 8080
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
    definition = task["taskDefinition"]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    (container,) = definition["containerDefinitions"]
    assert container["ulimits"] == [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment["IOT_ENDPOINT"] == deployment.outputs["iot_endpoint"]
    assert environment["GATEWAY_REGISTRY"] == "aws-iot"
    assert environment["GATEWAY_MQTT_AUTH"] == "sigv4"
    assert environment["GATEWAY_REGISTRY_EVENTS_TOPIC"] == "$aws/events/thing/+/deleted"


def test_cpu_target_tracking_scales_the_service(deployment: Deployment) -> None:
    scaling = deployment.client("application-autoscaling")
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    configuration = policy["TargetTrackingScalingPolicyConfiguration"]
    assert configuration["TargetValue"] == 60
    metric = configuration["PredefinedMetricSpecification"]["PredefinedMetricType"]
    assert metric == "ECSServiceAverageCPUUtilization"


def policy_statements(document: str) -> dict[str, tuple[list[str], list[str]]]:
    """{Sid: (actions, resources)} of an IAM/IoT policy document."""
    statements = json.loads(document)["Statement"]
    return {
        s["Sid"]: (as_list(s["Action"]), as_list(s["Resource"])) for s in statements if "Sid" in s
    }


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else sorted(value)


def test_task_role_may_only_bridge_charge_points(deployment: Deployment) -> None:
    iam = deployment.client("iam")
    prefix = "arn:aws:iot:us-east-1:123456789012"
    bridge = iam.get_role_policy(RoleName="ocpp-gateway-task", PolicyName="bridge-charge-points")
    statements = policy_statements(json.dumps(bridge["PolicyDocument"]))
    assert statements == {
        "ConnectAsChargePoints": (["iot:Connect"], [f"{prefix}:client/*"]),
        "PublishChargePointFrames": (["iot:Publish"], [f"{prefix}:topic/*/in"]),
        "ReceiveAnswers": (["iot:Receive"], [f"{prefix}:topic/*/out"]),
        "SubscribeToAnswers": (["iot:Subscribe"], [f"{prefix}:topicfilter/*/out"]),
        "ClaimChargePoints": (
            ["iot:Publish", "iot:Receive", "iot:RetainPublish"],
            [f"{prefix}:topic/ocpp-gateway/claims/*"],
        ),
        "WatchClaims": (["iot:Subscribe"], [f"{prefix}:topicfilter/ocpp-gateway/claims/*"]),
        "PublishPresence": (
            ["iot:Publish", "iot:RetainPublish"],
            [
                f"{prefix}:topic/*/presence",
                f"{prefix}:topic/*/undelivered",
                f"{prefix}:topic/ocpp-gateway/gateways/*",
                f"{prefix}:topic/ocpp-gateway/gateways/*/check",
            ],
        ),
        "ConnectEventsWatcher": (["iot:Connect"], [f"{prefix}:client/ocpp-gateway:events:*"]),
        "SubscribeToRegistryEvents": (
            ["iot:Subscribe"],
            [f"{prefix}:topicfilter/$aws/events/thing/*/deleted"],
        ),
        "ReceiveRegistryEvents": (["iot:Receive"], [f"{prefix}:topic/$aws/events/thing/*/deleted"]),
    }
    lookup = iam.get_role_policy(RoleName="ocpp-gateway-task", PolicyName="look-up-things")
    assert policy_statements(json.dumps(lookup["PolicyDocument"])) == {
        "LookUpChargePoints": (["iot:DescribeThing"], [f"{prefix}:thing/*"]),
        "ListChargePoints": (["iot:ListThings"], ["*"]),
    }


def test_iot_policy_thing_and_rule_to_the_queue(deployment: Deployment) -> None:
    iot = deployment.client("iot")
    policy = iot.get_policy(policyName="ocpp-gateway-gateway")
    statements = policy_statements(policy["policyDocument"])
    assert "ConnectAsChargePoints" in statements
    prefix = "arn:aws:iot:us-east-1:123456789012"
    assert {sid: statements[sid] for sid in statements if "Events" in sid} == {
        "ConnectEventsWatcher": (["iot:Connect"], [f"{prefix}:client/ocpp-gateway:events:*"]),
        "SubscribeToRegistryEvents": (
            ["iot:Subscribe"],
            [f"{prefix}:topicfilter/$aws/events/thing/*/deleted"],
        ),
        "ReceiveRegistryEvents": (["iot:Receive"], [f"{prefix}:topic/$aws/events/thing/*/deleted"]),
    }
    assert iot.describe_thing(thingName="CP1")["thingName"] == "CP1"
    rule = iot.get_topic_rule(ruleName="ocpp_gateway_frames_to_queue")["rule"]
    assert "FROM '+/in'" in rule["sql"]
    assert "topic(1) AS chargePointId" in rule["sql"]
    (action,) = rule["actions"]
    assert action["sqs"]["queueUrl"].endswith("/ocpp-gateway-frames")
    assert rule["errorAction"]["sqs"]["queueUrl"].endswith("/ocpp-gateway-frames-dead-letter")


def test_thing_events_are_on_and_nothing_else_changed(deployment: Deployment) -> None:
    configurations = deployment.client("iot").describe_event_configurations()
    enabled = {name for name, c in configurations["eventConfigurations"].items() if c["Enabled"]}
    assert enabled == {"THING"}


def test_queue_hands_failures_to_the_dead_letter_queue(deployment: Deployment) -> None:
    sqs = deployment.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=deployment.outputs["frames_queue_url"], AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":ocpp-gateway-frames-dead-letter")
    assert int(redrive["maxReceiveCount"]) == 5
    assert int(attributes["VisibilityTimeout"]) == 180


def test_processor_lambda_reads_the_queue(deployment: Deployment) -> None:
    lambda_client = deployment.client("lambda")
    function = lambda_client.get_function(FunctionName="ocpp-gateway-processor")["Configuration"]
    assert function["Handler"] == "processor.aws_lambda.handler"
    assert function["Runtime"] == "python3.11"
    variables = function["Environment"]["Variables"]
    assert variables["IOT_DATA_ENDPOINT"] == deployment.outputs["iot_endpoint"]
    mappings = lambda_client.list_event_source_mappings()["EventSourceMappings"]
    (mapping,) = [m for m in mappings if m["FunctionArn"] == function["FunctionArn"]]
    assert mapping["EventSourceArn"].endswith(":ocpp-gateway-frames")
    role = deployment.client("iam").get_role_policy(
        RoleName="ocpp-gateway-processor", PolicyName="process-frames"
    )
    statements = policy_statements(json.dumps(role["PolicyDocument"]))
    assert statements["AnswerAndRecordShadow"][1] == [
        "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/*/shadow/update",
        "arn:aws:iot:us-east-1:123456789012:topic/*/out",
    ]


def test_ecr_repository_and_logs_exist(deployment: Deployment) -> None:
    (repository,) = deployment.client("ecr").describe_repositories()["repositories"]
    assert repository["repositoryUri"] == deployment.outputs["ecr_repository_url"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    groups = deployment.client("logs").describe_log_groups()["logGroups"]
    names = {group["logGroupName"] for group in groups}
    assert deployment.outputs["gateway_log_group"] in names
    assert "/aws/lambda/ocpp-gateway-processor" in names


def test_workspace_leaves_infra_untouched(deployment: Deployment) -> None:
    assert deployment.workspace.directory != tf_moto.INFRA_DIR
    leftovers = [p.name for p in tf_moto.INFRA_DIR.iterdir() if p.name.startswith(".terraform")]
    assert leftovers == [".terraform.lock.hcl"]  # committed, never rewritten

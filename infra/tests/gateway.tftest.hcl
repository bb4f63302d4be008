# Offline checks of the plan with a mocked aws provider (no credentials, no network):
#   terraform init -backend=false && terraform test -var processor_zip=<any existing file>

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["us-east-1c", "us-east-1a", "us-east-1b"]
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }
  mock_data "aws_iot_endpoint" {
    defaults = {
      endpoint_address = "example-ats.iot.us-east-1.amazonaws.com"
    }
  }
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_resource "aws_lb" {
    defaults = {
      dns_name = "ocpp-gateway-0123456789.elb.us-east-1.amazonaws.com"
      arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/ocpp-gateway/0123456789"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mocked"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/ocpp-gateway/0123456789"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:/mocked"
    }
  }
  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    }
  }
  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:us-east-1:123456789012:mocked"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn = "arn:aws:lambda:us-east-1:123456789012:function:mocked"
    }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = {
      arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/mocked:1"
    }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = {
      arn = "arn:aws:ecs:us-east-1:123456789012:cluster/mocked"
    }
  }
  mock_resource "aws_acm_certificate" {
    defaults = {
      arn = "arn:aws:acm:us-east-1:123456789012:certificate/issued"
      domain_validation_options = [{
        domain_name           = "ocpp.example.com"
        resource_record_name  = "_0123.ocpp.example.com."
        resource_record_type  = "CNAME"
        resource_record_value = "_4567.acm-validations.aws."
      }]
    }
  }
  mock_resource "aws_acm_certificate_validation" {
    defaults = {
      certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/issued"
    }
  }
  mock_resource "aws_ecr_repository" {
    defaults = {
      repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ocpp-gateway"
    }
  }
}

run "plain_websockets_by_default" {
  command = apply

  assert {
    condition     = aws_lb_listener.gateway.port == 80 && aws_lb_listener.gateway.protocol == "TCP"
    error_message = "without a certificate the listener must be TCP on 80"
  }
  assert {
    condition     = output.websocket_url == "ws://ocpp-gateway-0123456789.elb.us-east-1.amazonaws.com"
    error_message = "websocket_url must be ws://<load balancer name>"
  }
  assert {
    condition     = output.iot_endpoint == "example-ats.iot.us-east-1.amazonaws.com"
    error_message = "iot_endpoint must be the account's ATS data endpoint"
  }
  assert {
    condition     = length(aws_acm_certificate.gateway) == 0 && length(aws_route53_record.gateway) == 0
    error_message = "no certificate or DNS record without a domain"
  }
  assert {
    condition     = length(aws_subnet.public) == 2 && length(aws_subnet.private) == 2 && length(aws_nat_gateway.main) == 1
    error_message = "two zones with public and private subnets and a single NAT gateway by default"
  }
  assert {
    condition     = aws_subnet.public[0].availability_zone == "us-east-1a" && aws_subnet.public[1].availability_zone == "us-east-1b"
    error_message = "zones are the first az_count names in order"
  }
}

run "target_group_checks_health_on_8080" {
  command = plan

  assert {
    condition     = aws_lb_target_group.gateway.port == 8080 && aws_lb_target_group.gateway.target_type == "ip"
    error_message = "the target group must forward to the tasks' port 8080"
  }
  assert {
    condition     = aws_lb_target_group.gateway.health_check[0].path == "/health" && aws_lb_target_group.gateway.health_check[0].protocol == "HTTP"
    error_message = "the health check must be HTTP GET /health"
  }
  assert {
    condition     = aws_lb_target_group.gateway.deregistration_delay == "30"
    error_message = "draining must outlast the gateway's shutdown timeout (25 s + 5 s)"
  }
}

run "fargate_task_drains_and_has_65536_files" {
  command = plan

  assert {
    condition     = jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].ulimits[0] == { name = "nofile", softLimit = 65536, hardLimit = 65536 }
    error_message = "nofile must be 65536"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].stopTimeout == 30
    error_message = "ECS must wait shutdown_timeout + 5 s before SIGKILL"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].logConfiguration.logDriver == "awslogs"
    error_message = "logs must go to CloudWatch (awslogs)"
  }
  assert {
    condition = contains(
      jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment,
      { name = "GATEWAY_SHUTDOWN_TIMEOUT", value = "25" }
    )
    error_message = "the gateway must be told its shutdown timeout"
  }
  assert {
    condition = contains(
      jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment,
      { name = "IOT_ENDPOINT", value = "example-ats.iot.us-east-1.amazonaws.com" }
    )
    error_message = "the gateway must be given the IoT endpoint"
  }
  assert {
    condition     = aws_ecs_service.gateway.network_configuration[0].assign_public_ip == false
    error_message = "tasks run in private subnets without public addresses"
  }
}

run "cpu_target_tracking_defaults_to_60_percent" {
  command = plan

  assert {
    condition     = aws_appautoscaling_policy.gateway_cpu.target_tracking_scaling_policy_configuration[0].target_value == 60
    error_message = "default CPU target must be 60%"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.gateway_iot.statement : s.sid] == ["ConnectAsChargePoints", "PublishChargePointFrames", "ReceiveAnswers", "SubscribeToAnswers", "ClaimChargePoints", "WatchClaims", "PublishPresence"]
    error_message = "the gateway needs exactly these IoT permissions: frames, claims, presence"
  }
  assert {
    condition     = aws_appautoscaling_target.gateway.min_capacity == 1 && aws_appautoscaling_target.gateway.max_capacity == 10
    error_message = "default capacity must be 1 to 10 tasks"
  }
}

run "thing_events_on_and_the_watcher_allowed_by_default" {
  command = plan

  override_data {
    target = data.aws_iam_policy_document.gateway_broker
    values = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"ConnectEventsWatcher\"}]}"
    }
  }

  assert {
    condition     = length(aws_iot_event_configurations.things) == 1 && aws_iot_event_configurations.things[0].event_configurations == tomap({ THING = true })
    error_message = "Thing registry events must be turned on, and no other event type touched"
  }
  assert {
    condition = contains(
      jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment,
      { name = "GATEWAY_REGISTRY_EVENTS_TOPIC", value = "$aws/events/thing/+/deleted" }
    )
    error_message = "the gateway must be told to watch Thing-deleted events"
  }
  assert {
    condition = [for s in data.aws_iam_policy_document.gateway_broker.statement : [s.sid, one(s.actions), one(s.resources)]] == [
      ["ConnectEventsWatcher", "iot:Connect", "arn:aws:iot:us-east-1:123456789012:client/ocpp-gateway:events:*"],
      ["SubscribeToRegistryEvents", "iot:Subscribe", "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/events/thing/*/deleted"],
      ["ReceiveRegistryEvents", "iot:Receive", "arn:aws:iot:us-east-1:123456789012:topic/$aws/events/thing/*/deleted"],
    ]
    error_message = "the IoT policy must let the events watcher connect, subscribe to and receive Thing-deleted events, and nothing more"
  }
  assert {
    condition     = data.aws_iam_policy_document.gateway_broker.source_policy_documents == tolist([data.aws_iam_policy_document.gateway_iot.json])
    error_message = "the IoT policy must hold the charge point permissions too"
  }
  assert {
    condition     = aws_iot_policy.gateway.policy == data.aws_iam_policy_document.gateway_broker.json
    error_message = "the IoT policy must be the document with the watcher's permissions"
  }
  assert {
    condition     = aws_iam_role_policy.task_iot.policy == aws_iot_policy.gateway.policy
    error_message = "the task role (SigV4) must allow what the IoT policy (certificate) allows, the watcher included"
  }
}

run "thing_events_off" {
  command = plan

  variables {
    registry_events = false
  }

  assert {
    condition     = length(aws_iot_event_configurations.things) == 0
    error_message = "the account's event configuration must be left alone"
  }
  assert {
    condition = contains(
      jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment,
      { name = "GATEWAY_REGISTRY_EVENTS_TOPIC", value = " " }
    )
    error_message = "the watcher must be turned off with a blank topic (the gateway trims it to empty)"
  }
  assert {
    condition     = length(data.aws_iam_policy_document.gateway_broker.statement) == 0
    error_message = "no watcher, no watcher permissions"
  }
}

run "watcher_permissions_follow_an_overridden_topic" {
  command = plan

  variables {
    environment = { GATEWAY_REGISTRY_EVENTS_TOPIC = "fleet/registry/+/deleted" }
  }

  assert {
    condition = [for s in data.aws_iam_policy_document.gateway_broker.statement : one(s.resources)] == [
      "arn:aws:iot:us-east-1:123456789012:client/ocpp-gateway:events:*",
      "arn:aws:iot:us-east-1:123456789012:topicfilter/fleet/registry/*/deleted",
      "arn:aws:iot:us-east-1:123456789012:topic/fleet/registry/*/deleted",
    ]
    error_message = "the policy must name the topic the gateway subscribes to"
  }
}

run "scaling_settings_follow_the_variables" {
  command = plan

  variables {
    min_tasks          = 2
    max_tasks          = 40
    cpu_target_percent = 45
    environment        = { GATEWAY_LOG_LEVEL = "DEBUG", GATEWAY_LINK_MODE = "shared", GATEWAY_LINK_IMPL = "aiomqtt" }
    secrets            = { GATEWAY_MQTT_KEY_PEM = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gateway-key" }
  }

  assert {
    condition     = aws_appautoscaling_target.gateway.min_capacity == 2 && aws_appautoscaling_target.gateway.max_capacity == 40
    error_message = "min_tasks/max_tasks must reach the scalable target"
  }
  assert {
    condition     = aws_appautoscaling_policy.gateway_cpu.target_tracking_scaling_policy_configuration[0].target_value == 45
    error_message = "cpu_target_percent must reach the policy"
  }
  assert {
    condition = contains(
      jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].environment,
      { name = "GATEWAY_LINK_MODE", value = "shared" }
    )
    error_message = "var.environment must override the defaults"
  }
  assert {
    condition = jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].secrets == [
      { name = "GATEWAY_MQTT_KEY_PEM", valueFrom = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gateway-key" }
    ]
    error_message = "secrets must be passed as ECS secrets"
  }
  assert {
    condition     = length(aws_iam_role_policy.execution_secrets) == 1
    error_message = "the execution role must be allowed to read the secrets"
  }
  assert {
    condition     = contains([for s in data.aws_iam_policy_document.gateway_iot.statement : s.sid], "ClaimChargePoints")
    error_message = "the links need the claim topics"
  }
}

run "tls_on_443_with_a_given_certificate" {
  command = apply

  variables {
    certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/given"
  }

  assert {
    condition     = aws_lb_listener.gateway.port == 443 && aws_lb_listener.gateway.protocol == "TLS"
    error_message = "with a certificate the listener must be TLS on 443"
  }
  assert {
    condition     = aws_lb_listener.gateway.certificate_arn == "arn:aws:acm:us-east-1:123456789012:certificate/given"
    error_message = "the listener must use the given certificate"
  }
  assert {
    condition     = startswith(output.websocket_url, "wss://")
    error_message = "websocket_url must be wss:// with TLS"
  }
  assert {
    condition     = one(aws_security_group.load_balancer.ingress).from_port == 443
    error_message = "the load balancer must admit 443 only"
  }
}

run "tls_certificate_issued_for_a_domain" {
  command = apply

  variables {
    domain_name     = "ocpp.example.com"
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
  }

  assert {
    condition     = length(aws_acm_certificate.gateway) == 1 && aws_acm_certificate.gateway[0].validation_method == "DNS"
    error_message = "a DNS-validated certificate must be requested for the domain"
  }
  assert {
    condition     = aws_lb_listener.gateway.protocol == "TLS" && aws_lb_listener.gateway.certificate_arn == "arn:aws:acm:us-east-1:123456789012:certificate/issued"
    error_message = "the listener must use the validated certificate"
  }
  assert {
    condition     = output.websocket_url == "wss://ocpp.example.com"
    error_message = "websocket_url must name the domain"
  }
  assert {
    condition     = length(aws_route53_record.gateway) == 1
    error_message = "the domain must get an alias record to the load balancer"
  }
  assert {
    condition     = aws_route53_record.certificate_validation["ocpp.example.com"].records == toset(["_4567.acm-validations.aws."])
    error_message = "the certificate's validation record must be created in the zone"
  }
}

run "bad_inputs_are_refused_with_a_reason" {
  command = plan

  variables {
    name               = "Bad_Name"
    az_count           = 1
    cpu_target_percent = 0
    things             = ["CP#1"]
    vpc_cidr           = "10.0.0.0/24"
    processor_zip      = "no-such-package.zip"
  }

  expect_failures = [
    var.name,
    var.az_count,
    var.cpu_target_percent,
    var.things,
    var.vpc_cidr,
    var.processor_zip,
  ]
}

run "the_registry_mirror_may_list_things_and_has_time_to_load" {
  command = plan

  assert {
    condition = [for s in data.aws_iam_policy_document.gateway_registry.statement : [s.sid, one(s.actions), one(s.resources)]] == [
      ["LookUpChargePoints", "iot:DescribeThing", "arn:aws:iot:us-east-1:123456789012:thing/*"],
      ["ListChargePoints", "iot:ListThings", "*"],
    ]
    error_message = "the task role must allow DescribeThing on Things and ListThings (no resource type), and nothing more"
  }
  assert {
    condition     = aws_ecs_service.gateway.health_check_grace_period_seconds >= 120 && jsondecode(aws_ecs_task_definition.gateway.container_definitions)[0].healthCheck.startPeriod >= 120
    error_message = "health checks must wait for the registry mirror's first load (/health is 503 until then)"
  }
}

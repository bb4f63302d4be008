# ECS cluster and the gateway's Fargate service behind the load balancer.

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "gateway" {
  name              = "/${var.name}/gateway"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

locals {
  # Published by IoT Core when a Thing is deleted, once Thing events are on (iot.tf).
  thing_deleted_topic = "$aws/events/thing/+/deleted"

  # Defaults for AWS; var.environment overrides any of them.
  gateway_environment = merge(
    {
      GATEWAY_PORT             = "8080"
      GATEWAY_REGISTRY         = "aws-iot"
      GATEWAY_LINK_MODE        = "per-cp"
      GATEWAY_LINK_IMPL        = "awscrt"
      GATEWAY_MQTT_AUTH        = "sigv4"
      GATEWAY_LOG_FORMAT       = "json"
      GATEWAY_SHUTDOWN_TIMEOUT = tostring(var.shutdown_timeout)
      IOT_ENDPOINT             = data.aws_iot_endpoint.data.endpoint_address
      # MQTT over WebSockets signed with the task role (SigV4): no device certificate needed.
      IOT_PORT   = "443"
      AWS_REGION = local.region
      # Thing-deleted events close a charge point at once (var.registry_events). Off is a blank,
      # which the gateway trims to empty: an empty value would give the task definition a
      # permanent diff (hashicorp/terraform-provider-aws#39533).
      GATEWAY_REGISTRY_EVENTS_TOPIC = var.registry_events ? local.thing_deleted_topic : " "
    },
    var.environment,
  )

  gateway_container = {
    name                   = "gateway"
    image                  = local.container_image
    essential              = true
    command                = ["ocpp-gateway"]
    readonlyRootFilesystem = true
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment            = [for key in sort(keys(local.gateway_environment)) : { name = key, value = local.gateway_environment[key] }]
    secrets                = [for key in sort(keys(var.secrets)) : { name = key, valueFrom = var.secrets[key] }]
    ulimits                = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    stopTimeout            = var.shutdown_timeout + 5
    healthCheck = {
      command  = ["CMD", "python", "/usr/local/lib/ocpp/healthcheck.py"]
      interval = 10
      timeout  = 3
      retries  = 3
      # /health is 503 until the registry mirror is loaded: ~40 s for 100,000 Things
      # (400 ListThings pages), see docs/registry.md.
      startPeriod = 120
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.gateway.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "gateway"
      }
    }
  }
}

resource "aws_ecs_task_definition" "gateway" {
  family                   = "${var.name}-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.gateway_container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

resource "aws_ecs_service" "gateway" {
  name            = "${var.name}-gateway"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.gateway.arn
  launch_type     = "FARGATE"
  desired_count   = var.min_tasks
  # Covers the registry mirror's first load (/health is 503 until then), as startPeriod above.
  health_check_grace_period_seconds = 120
  propagate_tags                    = "SERVICE"
  enable_execute_command            = false

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.gateway.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.gateway.arn
    container_name   = "gateway"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Auto scaling owns the task count once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.gateway]
}

# --- CPU target-tracking auto scaling -------------------------------------------------------

resource "aws_appautoscaling_target" "gateway" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.gateway.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "gateway_cpu" {
  name               = "${var.name}-cpu-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway.service_namespace
  resource_id        = aws_appautoscaling_target.gateway.resource_id
  scalable_dimension = aws_appautoscaling_target.gateway.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = var.scale_in_cooldown
    scale_out_cooldown = var.scale_out_cooldown

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

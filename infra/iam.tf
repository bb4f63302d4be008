# Roles of the gateway tasks: the execution role (pull the image, write logs, read secrets)
# and the task role (what the gateway itself may do in IoT Core: nothing more).

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

locals {
  shared_link        = lookup(local.gateway_environment, "GATEWAY_LINK_MODE", "per-cp") == "shared"
  presence_topics    = replace(lookup(local.gateway_environment, "GATEWAY_TOPIC_PRESENCE", "{cp_id}/presence"), "{cp_id}", "*")
  undelivered_topics = replace(lookup(local.gateway_environment, "GATEWAY_TOPIC_UNDELIVERED", "{cp_id}/undelivered"), "{cp_id}", "*")
  gateway_topics     = replace(lookup(local.gateway_environment, "GATEWAY_TOPIC_GATEWAY", "ocpp-gateway/gateways/{gateway_id}"), "{gateway_id}", "*")
  claim_topics       = replace(lookup(local.gateway_environment, "GATEWAY_TOPIC_CLAIM", "ocpp-gateway/claims/{cp_id}"), "{cp_id}", "*")

  # The registry events watcher's topic filter (blank: off), and as a policy resource.
  registry_events_topic = trimspace(local.gateway_environment["GATEWAY_REGISTRY_EVENTS_TOPIC"])
  registry_events       = local.registry_events_topic != ""
  registry_event_topics = replace(replace(local.registry_events_topic, "+", "*"), "#", "*")

  secret_arns    = [for arn in values(var.secrets) : arn if can(regex(":secretsmanager:", arn))]
  parameter_arns = [for arn in values(var.secrets) : arn if can(regex(":ssm:", arn))]
}

data "aws_iam_policy_document" "execution_secrets" {
  count = length(var.secrets) > 0 ? 1 : 0

  dynamic "statement" {
    for_each = length(local.secret_arns) > 0 ? [1] : []
    content {
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.parameter_arns) > 0 ? [1] : []
    content {
      actions   = ["ssm:GetParameters"]
      resources = local.parameter_arns
    }
  }

  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  count = length(var.secrets) > 0 ? 1 : 0

  name   = "read-gateway-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets[0].json
}

# What one gateway's charge point connections may do in IoT Core.
data "aws_iam_policy_document" "gateway_iot" {
  statement {
    sid       = "ConnectAsChargePoints"
    actions   = ["iot:Connect"]
    resources = ["${local.iot_arn_prefix}:client/*"]
  }

  statement {
    sid       = "PublishChargePointFrames"
    actions   = ["iot:Publish"]
    resources = ["${local.iot_arn_prefix}:topic/*/in"]
  }

  statement {
    sid       = "ReceiveAnswers"
    actions   = ["iot:Receive"]
    resources = ["${local.iot_arn_prefix}:topic/*/out"]
  }

  statement {
    sid       = "SubscribeToAnswers"
    actions   = ["iot:Subscribe"]
    resources = ["${local.iot_arn_prefix}:topicfilter/*/out"]
  }

  # Replicas announce which one holds a CP on the claim topics (retained with the per-CP link).
  statement {
    sid       = "ClaimChargePoints"
    actions   = ["iot:Publish", "iot:RetainPublish", "iot:Receive"]
    resources = ["${local.iot_arn_prefix}:topic/${local.claim_topics}"]
  }

  statement {
    sid       = "WatchClaims"
    actions   = ["iot:Subscribe"]
    resources = ["${local.iot_arn_prefix}:topicfilter/${local.claim_topics}"]
  }

  # Presence documents (retained, and as wills), undelivered notices, the gateway's own status
  # and liveness checks.
  statement {
    sid     = "PublishPresence"
    actions = ["iot:Publish", "iot:RetainPublish"]
    resources = [
      "${local.iot_arn_prefix}:topic/${local.presence_topics}",
      "${local.iot_arn_prefix}:topic/${local.undelivered_topics}",
      "${local.iot_arn_prefix}:topic/${local.gateway_topics}",
      "${local.iot_arn_prefix}:topic/${local.gateway_topics}/check",
    ]
  }
}

# Everything a gateway does on the broker: the above, and the registry events watcher
# (gateway/registry/events.py), which connects as `ocpp-gateway:events:<gateway id>:<nonce>` and
# subscribes to Thing-deleted events. The task role (SigV4) and the IoT policy (a device
# certificate) both get this document.
data "aws_iam_policy_document" "gateway_broker" {
  source_policy_documents = [data.aws_iam_policy_document.gateway_iot.json]

  # Also within client/* above; named so that narrowing that keeps the watcher connecting.
  dynamic "statement" {
    for_each = local.registry_events ? [1] : []
    content {
      sid       = "ConnectEventsWatcher"
      actions   = ["iot:Connect"]
      resources = ["${local.iot_arn_prefix}:client/ocpp-gateway:events:*"]
    }
  }

  dynamic "statement" {
    for_each = local.registry_events ? [1] : []
    content {
      sid       = "SubscribeToRegistryEvents"
      actions   = ["iot:Subscribe"]
      resources = ["${local.iot_arn_prefix}:topicfilter/${local.registry_event_topics}"]
    }
  }

  dynamic "statement" {
    for_each = local.registry_events ? [1] : []
    content {
      sid       = "ReceiveRegistryEvents"
      actions   = ["iot:Receive"]
      resources = ["${local.iot_arn_prefix}:topic/${local.registry_event_topics}"]
    }
  }
}

data "aws_iam_policy_document" "gateway_registry" {
  statement {
    sid       = "LookUpChargePoints"
    actions   = ["iot:DescribeThing"]
    resources = ["${local.iot_arn_prefix}:thing/*"]
  }

  # The gateway's mirror of the registry reads every Thing at start and every
  # GATEWAY_REGISTRY_RESYNC_INTERVAL. ListThings has no resource type: "*" is the only form.
  statement {
    sid       = "ListChargePoints"
    actions   = ["iot:ListThings"]
    resources = ["*"]
  }
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "task_iot" {
  name   = "bridge-charge-points"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.gateway_broker.json
}

resource "aws_iam_role_policy" "task_registry" {
  name   = "look-up-things"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.gateway_registry.json
}

# IoT Core: the gateway's IoT policy, Thing events, the charge point Things and the rule that
# hands every CP frame to the processor through a queue.

resource "aws_iot_policy" "gateway" {
  name   = "${var.name}-gateway"
  policy = data.aws_iam_policy_document.gateway_broker.json
}

# Thing registry events ($aws/events/thing/<name>/created|updated|deleted), off in a new
# account. This setting is account-wide (one per account and region), shared with every other
# stack there: deleting this resource (destroy, or registry_events = false) leaves it on. Only
# THING is set; the other event types keep their settings. The provider reads every event type
# back, which would plan an update on every run: later differences are ignored.
resource "aws_iot_event_configurations" "things" {
  count = var.registry_events ? 1 : 0

  event_configurations = { THING = true }

  lifecycle {
    ignore_changes = [event_configurations]
  }
}

resource "aws_iot_thing" "charge_point" {
  for_each = toset(var.things)

  name = each.key
}

# `+/in` -> queue. The body carries the frame byte for byte (base64) and the CP's subprotocol:
# {"payload": "<base64>", "chargePointId": "CP1", "subprotocol": "ocpp2.0.1"} (docs/processor.md).
resource "aws_iot_topic_rule" "frames_to_queue" {
  name        = replace("${var.name}_frames_to_queue", "-", "_")
  description = "Charge point frames (+/in) to the processor's queue"
  enabled     = true
  sql         = "SELECT encode(*, 'base64') AS payload, topic(1) AS chargePointId, get_user_property('subprotocol') AS subprotocol FROM '+/in'"
  sql_version = "2016-03-23"

  sqs {
    queue_url  = aws_sqs_queue.frames.url
    role_arn   = aws_iam_role.iot_rule.arn
    use_base64 = false
  }

  error_action {
    sqs {
      queue_url  = aws_sqs_queue.frames_dead_letter.url
      role_arn   = aws_iam_role.iot_rule.arn
      use_base64 = false
    }
  }
}

data "aws_iam_policy_document" "iot_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "iot_rule" {
  name               = "${var.name}-iot-rule"
  assume_role_policy = data.aws_iam_policy_document.iot_assume.json
}

data "aws_iam_policy_document" "iot_rule" {
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.frames.arn, aws_sqs_queue.frames_dead_letter.arn]
  }
}

resource "aws_iam_role_policy" "iot_rule" {
  name   = "send-frames-to-queue"
  role   = aws_iam_role.iot_rule.id
  policy = data.aws_iam_policy_document.iot_rule.json
}

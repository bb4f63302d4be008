# The processor: a Lambda fed by the frames queue, answering on <cpId>/out and recording
# boot attributes in the Thing's shadow.

resource "aws_sqs_queue" "frames_dead_letter" {
  name                      = "${var.name}-frames-dead-letter"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "frames" {
  name                       = "${var.name}-frames"
  visibility_timeout_seconds = var.processor_timeout * 6
  message_retention_seconds  = 86400
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.frames_dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_cloudwatch_log_group" "processor" {
  name              = "/aws/lambda/${var.name}-processor"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "processor" {
  name               = "${var.name}-processor"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "processor" {
  statement {
    sid       = "ConsumeFrames"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.frames.arn]
  }

  statement {
    sid     = "AnswerAndRecordShadow"
    actions = ["iot:Publish"]
    resources = [
      "${local.iot_arn_prefix}:topic/*/out",
      "${local.iot_arn_prefix}:topic/$aws/things/*/shadow/update",
    ]
  }

  # Classic shadow (boot attributes) and the named shadow `ocpp` (state): thing/<cpId>[/<name>].
  statement {
    sid       = "ReadAndUpdateShadows"
    actions   = ["iot:GetThingShadow", "iot:UpdateThingShadow"]
    resources = ["${local.iot_arn_prefix}:thing/*"]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.processor.arn}:*"]
  }

  statement {
    sid       = "ReadEncryptedSettings"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "processor" {
  name   = "process-frames"
  role   = aws_iam_role.processor.id
  policy = data.aws_iam_policy_document.processor.json
}

resource "aws_lambda_function" "processor" {
  # checkov:skip=CKV_AWS_116:Invoked synchronously by the SQS event source; failed messages go to the queue's dead-letter queue after max_receive_count deliveries.
  # checkov:skip=CKV_AWS_117:Reaches only the public IoT Core data plane; running in the VPC would add NAT traffic and cold-start cost for no isolation gain.
  # checkov:skip=CKV_AWS_115:Concurrency is capped where it matters, on the event source (scaling_config.maximum_concurrency); reserving concurrency fails in accounts with the default limit.
  # checkov:skip=CKV_AWS_272:The package is built from this repository by scripts/build_lambda.py; code signing needs an AWS Signer profile the operator may add.
  function_name    = "${var.name}-processor"
  role             = aws_iam_role.processor.arn
  runtime          = "python3.11"
  handler          = var.processor_handler
  filename         = var.processor_zip
  source_code_hash = filebase64sha256(var.processor_zip)
  memory_size      = var.processor_memory
  timeout          = var.processor_timeout
  kms_key_arn      = aws_kms_key.main.arn

  environment {
    variables = merge(
      {
        IOT_DATA_ENDPOINT   = data.aws_iot_endpoint.data.endpoint_address
        PROCESSOR_LOG_LEVEL = "INFO"
      },
      var.processor_environment,
    )
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.processor, aws_iam_role_policy.processor]
}

resource "aws_lambda_event_source_mapping" "frames" {
  event_source_arn        = aws_sqs_queue.frames.arn
  function_name           = aws_lambda_function.processor.arn
  batch_size              = var.processor_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.processor_max_concurrency
  }
}

# One customer-managed key for the project's logs, image repository and Lambda settings.
# (The queues use SQS-managed encryption, so the IoT rule needs no key permissions.)

data "aws_iam_policy_document" "kms" {
  # In a key policy, "*" is this key only: these are the standard account-administration and
  # CloudWatch Logs statements of a customer-managed key.
  # checkov:skip=CKV_AWS_111:Key policy; "*" means this key.
  # checkov:skip=CKV_AWS_356:Key policy; "*" means this key.
  # checkov:skip=CKV_AWS_109:Key policy; the account root keeps administering its own key.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncrypt"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${var.name}: logs, images and Lambda environment"
  enable_key_rotation     = true
  deletion_window_in_days = 14
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = var.name, ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394:Zones are chosen once, explicitly (var.availability_zones) or as the first az_count names; a zone added later is never picked up by itself.
  state = "available"
}

# The account's IoT Core data endpoint (ATS certificates) that the gateway and processor use.
data "aws_iot_endpoint" "data" {
  endpoint_type = "iot:Data-ATS"
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  azs        = length(var.availability_zones) > 0 ? var.availability_zones : slice(sort(data.aws_availability_zones.available.names), 0, var.az_count)

  iot_arn_prefix = "arn:${local.partition}:iot:${local.region}:${local.account_id}"

  # TLS on 443 when a certificate is given or can be issued for the domain, else TCP on 80.
  issue_certificate = var.certificate_arn == "" && var.domain_name != "" && var.route53_zone_id != ""
  tls               = var.certificate_arn != "" || local.issue_certificate
  certificate_arn   = local.issue_certificate ? aws_acm_certificate_validation.gateway[0].certificate_arn : var.certificate_arn
  listener_port     = local.tls ? 443 : 80
  public_host       = var.domain_name != "" ? var.domain_name : aws_lb.gateway.dns_name
  websocket_url     = "${local.tls ? "wss" : "ws"}://${local.public_host}"

  container_image = var.container_image != "" ? var.container_image : "${aws_ecr_repository.gateway.repository_url}:${var.image_tag}"
}

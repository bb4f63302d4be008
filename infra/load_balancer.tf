# Network Load Balancer: TCP passthrough on 80 (ws://) or TLS termination on 443 (wss://).

resource "aws_lb" "gateway" {
  # checkov:skip=CKV_AWS_150:Off by default so `terraform destroy` tears a trial down; production sets load_balancer_deletion_protection = true.
  # checkov:skip=CKV_AWS_91:NLB access logs cover TLS listeners only and need an S3 bucket of the operator's choice; connection events are in the gateway's logs and VPC flow logs.
  name                             = var.name
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = aws_subnet.public[*].id
  security_groups                  = [aws_security_group.load_balancer.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.load_balancer_deletion_protection
}

resource "aws_lb_target_group" "gateway" {
  name        = var.name
  port        = 8080
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = aws_vpc.main.id

  # A stopping task closes its CPs with 1012 itself; what is left is cut when draining ends.
  deregistration_delay   = var.shutdown_timeout + 5
  connection_termination = true

  health_check {
    protocol            = "HTTP"
    path                = "/health"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "gateway" {
  load_balancer_arn = aws_lb.gateway.arn
  port              = local.listener_port
  protocol          = local.tls ? "TLS" : "TCP"
  certificate_arn   = local.tls ? local.certificate_arn : null
  ssl_policy        = local.tls ? var.tls_policy : null

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }
}

# --- optional: certificate and DNS name ----------------------------------------------------

resource "aws_acm_certificate" "gateway" {
  count = local.issue_certificate ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # Keyed by the domain (known at plan time); the record itself comes from the certificate.
  certificate_validation = local.issue_certificate ? {
    (var.domain_name) = one([
      for option in aws_acm_certificate.gateway[0].domain_validation_options : option
      if option.domain_name == var.domain_name
    ])
  } : {}
}

resource "aws_route53_record" "certificate_validation" {
  for_each = local.certificate_validation

  zone_id         = var.route53_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "gateway" {
  count = local.issue_certificate ? 1 : 0

  certificate_arn         = aws_acm_certificate.gateway[0].arn
  validation_record_fqdns = [for record in aws_route53_record.certificate_validation : record.fqdn]
}

resource "aws_route53_record" "gateway" {
  count = var.domain_name != "" && var.route53_zone_id != "" ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.gateway.dns_name
    zone_id                = aws_lb.gateway.zone_id
    evaluate_target_health = true
  }
}

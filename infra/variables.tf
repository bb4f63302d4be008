variable "name" {
  description = "Prefix of every resource name; also the Project tag."
  type        = string
  default     = "ocpp-gateway"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 characters of lower-case letters, digits and '-' (it prefixes load balancer and queue names)."
  }
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# --- network -----------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC; public and private /24 subnets are carved from it."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger, e.g. 10.40.0.0/16."
  }
}

variable "az_count" {
  description = "Availability zones to spread subnets, load balancer nodes and tasks over."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "availability_zones" {
  description = "Zones to use, e.g. [\"us-east-1a\", \"us-east-1b\"]. Empty: the first az_count available zones of the region."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == var.az_count
    error_message = "availability_zones must be empty or list exactly az_count zones."
  }
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per availability zone (resilient, costlier) instead of a single one."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "Networks charge points connect from. Public charge points need 0.0.0.0/0."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "flow_log_retention_days" {
  description = "Days to keep VPC flow logs."
  type        = number
  default     = 365
}

# --- load balancer and TLS ---------------------------------------------------------------

variable "certificate_arn" {
  description = "ACM certificate for a TLS listener on 443 (wss://). Empty: see domain_name, else plain TCP on 80 (ws://)."
  type        = string
  default     = ""
}

variable "domain_name" {
  description = "Public name of the gateway, e.g. ocpp.example.com. With route53_zone_id and no certificate_arn, a DNS-validated certificate is issued."
  type        = string
  default     = ""
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name: gets the alias record (and the certificate validation records)."
  type        = string
  default     = ""
}

variable "tls_policy" {
  description = "Security policy of the TLS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "load_balancer_deletion_protection" {
  description = "Refuse to delete the load balancer (turn on in production)."
  type        = bool
  default     = false
}

# --- gateway service ---------------------------------------------------------------------

variable "container_image" {
  description = "Full image reference for the gateway. Empty: the ECR repository created here, tag image_tag."
  type        = string
  default     = ""
}

variable "image_tag" {
  description = "Tag of the image in the ECR repository created here (tags are immutable: push a new tag per release)."
  type        = string
  default     = "0.1.0"
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 2048
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: must match the pushed image."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "min_tasks" {
  description = "Fewest gateway tasks auto scaling keeps running."
  type        = number
  default     = 1
}

variable "max_tasks" {
  description = "Most gateway tasks auto scaling starts."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= 1
    error_message = "max_tasks must be at least 1."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation the service's target-tracking policy keeps (percent)."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent > 0 && var.cpu_target_percent <= 100
    error_message = "cpu_target_percent must be in (0, 100]."
  }
}

variable "scale_in_cooldown" {
  description = "Seconds between scale-in steps (every scale-in makes the CPs of a task reconnect)."
  type        = number
  default     = 300
}

variable "scale_out_cooldown" {
  description = "Seconds between scale-out steps."
  type        = number
  default     = 60
}

variable "shutdown_timeout" {
  description = "Seconds a stopping task has to close its CP sockets with 1012 (GATEWAY_SHUTDOWN_TIMEOUT); ECS waits 5 s longer before SIGKILL."
  type        = number
  default     = 25

  validation {
    condition     = var.shutdown_timeout >= 1 && var.shutdown_timeout <= 115
    error_message = "shutdown_timeout must be 1-115 seconds (Fargate stops a container after at most 120 s)."
  }
}

variable "environment" {
  description = "Extra environment variables of the gateway container (override the defaults set here)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables taken from Secrets Manager or SSM Parameter Store: name => secret or parameter ARN."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Days to keep the gateway's and the processor's logs."
  type        = number
  default     = 365
}

# --- IoT Core and the processor ----------------------------------------------------------

variable "things" {
  description = "IoT Things (charge point ids) to register, e.g. [\"CP1\"]. Things can also be created with the AWS CLI."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.things : can(regex("^[A-Za-z0-9*=|@._-]{1,48}$", id))])
    error_message = "every thing name must be a valid charge point id: 1-48 of A-Z a-z 0-9 * - _ = | @ ."
  }
}

variable "registry_events" {
  description = "Close a charge point at once when its Thing is deleted: turn on IoT Core's Thing registry events, run the gateway's watcher of them (GATEWAY_REGISTRY_EVENTS_TOPIC) and allow it in the task role and the gateway's IoT policy. The event setting is account-wide (every Thing in this account and region, shared with other stacks) and stays on after destroy. false: deleted Things are closed by re-validation only, after their cached answer expires."
  type        = bool
  default     = true
}

variable "processor_zip" {
  description = "Path of the processor Lambda package (scripts/build_lambda.py writes build/processor-lambda.zip)."
  type        = string
  default     = "../build/processor-lambda.zip"

  validation {
    condition     = fileexists(var.processor_zip)
    error_message = "processor_zip: no such file. Build the package first: .venv/bin/python scripts/build_lambda.py (writes build/processor-lambda.zip)."
  }
}

variable "processor_handler" {
  description = "Handler of the processor Lambda."
  type        = string
  default     = "processor.aws_lambda.handler"
}

variable "processor_memory" {
  description = "Memory of the processor Lambda in MiB."
  type        = number
  default     = 256
}

variable "processor_timeout" {
  description = "Seconds one processor invocation may take; the queue's visibility timeout is six times this."
  type        = number
  default     = 30
}

variable "processor_batch_size" {
  description = "Messages from the queue per processor invocation."
  type        = number
  default     = 10
}

variable "processor_environment" {
  description = "Extra environment variables of the processor Lambda (PROCESSOR_HEARTBEAT_INTERVAL, PROCESSOR_STATE_SHADOW, ...)."
  type        = map(string)
  default     = {}
}

variable "processor_max_concurrency" {
  description = "Most processor invocations the queue drives at once (2-1000)."
  type        = number
  default     = 20

  validation {
    condition     = var.processor_max_concurrency >= 2 && var.processor_max_concurrency <= 1000
    error_message = "processor_max_concurrency must be between 2 and 1000."
  }
}

variable "max_receive_count" {
  description = "Deliveries of a message before it moves to the dead-letter queue."
  type        = number
  default     = 5
}

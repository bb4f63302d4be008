output "websocket_url" {
  description = "Where charge points connect: <websocket_url>/<cpId> with subprotocol ocpp2.0.1."
  value       = local.websocket_url
}

output "iot_endpoint" {
  description = "The account's IoT Core data endpoint (ATS) the gateway and the processor use."
  value       = data.aws_iot_endpoint.data.endpoint_address
}

output "ecr_repository_url" {
  description = "Push the gateway image here (docker push <url>:<image_tag>)."
  value       = aws_ecr_repository.gateway.repository_url
}

output "ecs_cluster" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service" {
  description = "ECS service name of the gateway."
  value       = aws_ecs_service.gateway.name
}

output "frames_queue_url" {
  description = "Queue between the IoT rule and the processor Lambda."
  value       = aws_sqs_queue.frames.url
}

output "dead_letter_queue_url" {
  description = "Frames the processor failed on max_receive_count times, and rule errors."
  value       = aws_sqs_queue.frames_dead_letter.url
}

output "gateway_log_group" {
  description = "CloudWatch log group of the gateway tasks."
  value       = aws_cloudwatch_log_group.gateway.name
}

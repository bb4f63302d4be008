"""The CSMS side of the gateway: answers charge point calls arriving on `<cpId>/in`.

`processor.answers.respond` decides answers without I/O; `processor.service` runs it against an
MQTT broker (`ocpp-processor`), `processor.aws_lambda` as an AWS Lambda behind an IoT rule.
"""

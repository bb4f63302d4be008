// Checks what the gateway sent for one step of ocpp_charge_point.groovy (parameter: the step).
import groovy.json.JsonSlurper

String step = args.length > 0 ? args[0] : ""
String data = prev.getResponseDataAsString()
String messageId = vars.get("ocpp.messageId")
String cpId = vars.get("ocpp.cpId")

String problem(String step, String data, String messageId, String cpId) {
    switch (step) {
        case "connect":
            def expected = "open " + vars.get("SUBPROTOCOL")
            return data == expected ? null : "expected '${expected}', got '${data}'"
        case "boot":
        case "heartbeat":
            def frame
            try {
                frame = new JsonSlurper().parseText(data)
            } catch (Exception ignored) {
                return "not an OCPP-J frame: ${data}"
            }
            if (!(frame instanceof List) || frame.size() != 3 || frame[0] != 3) {
                return "expected a CALLRESULT [3, id, payload], got ${data}"
            }
            if (frame[1] != messageId) {
                return "CALLRESULT for message ${frame[1]}, expected ${messageId}"
            }
            def payload = frame[2]
            if (!(payload instanceof Map) || !payload.currentTime) {
                return "CALLRESULT without currentTime: ${data}"
            }
            if (step == "boot" && (payload.status != "Accepted" || !(payload.interval instanceof Number))) {
                return "BootNotification not Accepted with an interval: ${data}"
            }
            return null
        case "close":
            return data.startsWith("close 1000") ? null : "expected close 1000, got '${data}'"
        case "refused":
            def expected = "close 1008 Charge Point ${cpId} not registered as an IoT Thing"
            return data == expected ? null : "expected '${expected}', got '${data}'"
        default:
            return "unknown step '${step}'"
    }
}

// A sampler that threw has no response data: report its error, not the empty answer.
def failure = prev.isSuccessful() ? problem(step, data, messageId, cpId) : prev.getResponseMessage()
if (failure != null) {
    AssertionResult.setFailure(true)
    AssertionResult.setFailureMessage("${cpId} ${step}: ${failure}")
}

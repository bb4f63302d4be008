// One simulated charge point per JMeter thread, on Java's built-in java.net.http.WebSocket.
// Called by the JSR223 samplers of ocpp_charge_points.jmx with one parameter, the step:
//   connect   open ws://HOST:PORT[PATH]/<PREFIX><thread number> with subprotocol ocpp2.0.1
//   boot      send BootNotification, wait for the CALLRESULT
//   heartbeat send Heartbeat, wait for the CALLRESULT
//   close     close with 1000 and wait for the gateway's close frame
//   refused   connect with an unregistered id and wait for the gateway to close the socket
// The response data of every step is what the gateway sent (a frame, or "close <code> <reason>"),
// checked by ocpp_assertion.groovy.
import groovy.json.JsonOutput
import java.net.http.HttpClient
import java.net.http.WebSocket
import java.time.Duration
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionStage
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

class ChargePointListener implements WebSocket.Listener {
    final LinkedBlockingQueue<String> frames = new LinkedBlockingQueue<>()
    final CompletableFuture<String> closed = new CompletableFuture<>()
    private StringBuilder partial = new StringBuilder()

    void onOpen(WebSocket ws) { ws.request(1) }

    CompletionStage<?> onText(WebSocket ws, CharSequence data, boolean last) {
        partial.append(data)
        if (last) {
            frames.add(partial.toString())
            partial = new StringBuilder()
        }
        ws.request(1)
        return null
    }

    CompletionStage<?> onClose(WebSocket ws, int code, String reason) {
        closed.complete("close " + code + " " + reason)
        return null
    }

    void onError(WebSocket ws, Throwable error) {
        closed.complete("error " + error)
    }
}

// One HttpClient for every thread: it owns the selector thread and connection pool.
HttpClient sharedClient(long timeoutMs) {
    synchronized (props) {
        def client = props.get("ocpp.httpClient")
        if (client == null) {
            client = HttpClient.newBuilder().connectTimeout(Duration.ofMillis(timeoutMs)).build()
            props.put("ocpp.httpClient", client)
        }
        return client
    }
}

String chargePointId(String prefix) {
    return prefix + String.format("%06d", ctx.getThreadNum() + 1)
}

String address(String cpId) {
    def path = vars.get("PATH_PREFIX") ?: ""
    return "${vars.get('SCHEME')}://${vars.get('HOST')}:${vars.get('PORT')}${path}/${cpId}"
}

def open(String cpId, long timeoutMs) {
    def listener = new ChargePointListener()
    def ws = sharedClient(timeoutMs).newWebSocketBuilder()
            .subprotocols(vars.get("SUBPROTOCOL"))
            .connectTimeout(Duration.ofMillis(timeoutMs))
            .buildAsync(URI.create(address(cpId)), listener)
            .get(timeoutMs, TimeUnit.MILLISECONDS)
    return [ws, listener]
}

String call(String action, Map payload, long timeoutMs) {
    def ws = vars.getObject("ocpp.ws") as WebSocket
    def listener = vars.getObject("ocpp.listener") as ChargePointListener
    if (ws == null) {
        throw new IllegalStateException("not connected: the connect step failed")
    }
    def messageId = UUID.randomUUID().toString()
    vars.put("ocpp.messageId", messageId)
    SampleResult.setSamplerData(JsonOutput.toJson([2, messageId, action, payload]))
    if (ws.isOutputClosed()) {
        return listener.closed.getNow("output closed")
    }
    ws.sendText(SampleResult.getSamplerData(), true).get(timeoutMs, TimeUnit.MILLISECONDS)
    def answer = listener.frames.poll(timeoutMs, TimeUnit.MILLISECONDS)
    if (answer == null) {
        def closed = listener.closed.getNow(null)
        return closed ?: "timeout: no answer within ${timeoutMs} ms"
    }
    return answer
}

long timeoutMs = Long.parseLong(vars.get("TIMEOUT_MS"))
String step = args.length > 0 ? args[0] : ""
String response
switch (step) {
    case "connect":
        def cpId = chargePointId(vars.get("PREFIX"))
        vars.put("ocpp.cpId", cpId)
        SampleResult.setSamplerData("GET " + address(cpId))
            def (ws, listener) = open(cpId, timeoutMs)
            vars.putObject("ocpp.ws", ws)
        vars.putObject("ocpp.listener", listener)
        response = "open " + ws.getSubprotocol()
        break
    case "boot":
        def station = [model: "JMeter", vendorName: "Load Test", serialNumber: vars.get("ocpp.cpId"),
                       firmwareVersion: "1.0"]
        response = call("BootNotification", [chargingStation: station, reason: "PowerUp"], timeoutMs)
        break
    case "heartbeat":
        response = call("Heartbeat", [:], timeoutMs)
        break
    case "close":
        def ws = vars.getObject("ocpp.ws") as WebSocket
        def listener = vars.getObject("ocpp.listener") as ChargePointListener
        if (ws == null) {
            response = "not connected"
            break
        }
            ws.sendClose(WebSocket.NORMAL_CLOSURE, "done")
        response = listener.closed.get(timeoutMs, TimeUnit.MILLISECONDS)
            vars.remove("ocpp.ws")
        break
    case "refused":
        def cpId = chargePointId(vars.get("REFUSED_PREFIX"))
        vars.put("ocpp.cpId", cpId)
        SampleResult.setSamplerData("GET " + address(cpId))
            def (ws, listener) = open(cpId, timeoutMs)
        response = listener.closed.get(timeoutMs, TimeUnit.MILLISECONDS)
            ws.abort()
        break
    default:
        throw new IllegalArgumentException("unknown step '${step}': use connect, boot, heartbeat, close or refused")
}
SampleResult.setResponseData(response, "UTF-8")
SampleResult.setDataType(SampleResult.TEXT)
SampleResult.setResponseCodeOK()
SampleResult.setSuccessful(true)

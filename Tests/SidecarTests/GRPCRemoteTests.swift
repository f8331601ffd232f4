import EventHTTP
import Foundation
import TestTLSSupport
import Testing

@testable import Sidecar

#if canImport(Glibc)
import Glibc
#endif

/// A fake gRPC inference server (grpcio, a generic handler for `ModelInfer`) standing behind
/// `grpc://` and `grpcs://` versions. It answers by the model name the message carries: `down*`
/// aborts UNAVAILABLE, `missing*` NOT_FOUND, `slow` answers after 2 s, `hold` after 300 ms, any
/// other name answers output `predict` = [0.25, 0.75] (FP64, raw for a raw request as Triton
/// does, else typed) with initial metadata
/// `x-upstream: fake`. Every call is one JSON line in `eventsPath`: its peer (one per
/// connection), model, metadata and the most calls in progress at once so far.
final class FakeGRPCUpstream: @unchecked Sendable {
    let port: Int
    let eventsPath: String
    private let process = Process()
    private let input = Pipe()

    static let source = #"""
        import json, struct, sys, threading, time
        from concurrent import futures
        import grpc
        from tritonclient.grpc import service_pb2 as v2

        EVENTS = sys.argv[1]
        state = {"inflight": 0, "most": 0}
        lock = threading.Lock()


        def infer(request, context):
            name = request.model_name
            with lock:
                state["inflight"] += 1
                state["most"] = max(state["most"], state["inflight"])
                line = json.dumps({"peer": context.peer(), "model": name, "most": state["most"],
                                   "meta": {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}})
                with open(EVENTS, "a") as out:
                    out.write(line + "\n")
            try:
                if name.startswith("down"):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "backend down for maintenance")
                if name.startswith("missing"):
                    context.abort(grpc.StatusCode.NOT_FOUND, "no model called missing here")
                # The scenario: "slow" outlasts a call's deadline; "hold" keeps calls overlapping.
                if name == "slow":
                    time.sleep(2)
                if name == "hold":
                    time.sleep(0.3)
                context.send_initial_metadata((("x-upstream", "fake"),))
                response = v2.ModelInferResponse(model_name=name, model_version="up", id=request.id)
                output = response.outputs.add(name="predict", datatype="FP64", shape=[2])
                if request.raw_input_contents:
                    response.raw_output_contents.append(struct.pack("<2d", 0.25, 0.75))
                else:
                    output.contents.fp64_contents.extend([0.25, 0.75])
                return response
            finally:
                with lock:
                    state["inflight"] -= 1


        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                if details.method == "/inference.GRPCInferenceService/ModelInfer":
                    return grpc.unary_unary_rpc_method_handler(
                        infer, request_deserializer=v2.ModelInferRequest.FromString,
                        response_serializer=v2.ModelInferResponse.SerializeToString)
                return None


        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        server.add_generic_rpc_handlers((Handler(),))
        if len(sys.argv) > 3:
            key, cert = open(sys.argv[3], "rb").read(), open(sys.argv[2], "rb").read()
            port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
        else:
            port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        print(port, flush=True)
        sys.stdin.read()
        server.stop(0)
        """#

    /// `tls`: serve grpcs with this certificate and key.
    init(tls: (cert: String, key: String)? = nil) throws {
        let python = try GRPCClients.python.get()
        let script = NSTemporaryDirectory() + "switchyard-fake-grpc-upstream-\(getpid()).py"
        try Data(Self.source.utf8).write(to: URL(fileURLWithPath: script), options: .atomic)
        eventsPath = NSTemporaryDirectory() + "switchyard-fake-grpc-\(UUID().uuidString).jsonl"
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, eventsPath] + (tls.map { [$0.cert, $0.key] } ?? [])
        var environment = ProcessInfo.processInfo.environment
        environment["GRPC_VERBOSITY"] = "NONE"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        // The first line is the port.
        var line: [UInt8] = []
        var byte: UInt8 = 0
        let fd = output.fileHandleForReading.fileDescriptor
        while read(fd, &byte, 1) == 1, byte != 0x0A { line.append(byte) }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            process.terminate()
            process.waitUntilExit()
            throw TestFailure("the fake gRPC upstream did not start (exit \(process.terminationStatus))")
        }
        self.port = port
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: eventsPath)
    }

    /// Every call the upstream has seen, oldest first.
    var calls: [[String: Any]] {
        let text = (try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

/// The clients of these tests: tritonclient.grpc and grpcio calls to the sidecar, and python `h2`
/// for a `grpc-timeout` that no client library would enforce itself. `python3 script SCENARIO
/// PORT STUBS_DIR` prints one JSON object.
enum GRPCRemoteClientScript {
    static let source = #"""
        import json, socket, struct, sys, threading, time
        sys.path.insert(0, sys.argv[3])
        import grpc
        import numpy as np
        import tritonclient.grpc as triton
        from tritonclient.grpc import service_pb2 as v2

        SCENARIO, PORT = sys.argv[1], int(sys.argv[2])
        TARGET = "127.0.0.1:%d" % PORT
        ROWS = [[12, 70.5, 1, 0], [3, 20.0, 0, 1]]
        channel = grpc.insecure_channel(TARGET)
        stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=v2.ModelInferRequest.SerializeToString,
                                   response_deserializer=v2.ModelInferResponse.FromString)


        def request(model):
            message = v2.ModelInferRequest(model_name=model, id="call-1")
            tensor = message.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
            tensor.contents.fp64_contents.extend([x for row in ROWS for x in row])
            return message


        def infer(model, metadata=()):
            try:
                response, state = stub.with_call(request(model), metadata=list(metadata), timeout=10)
                return {"code": "OK", "predict": list(response.outputs[0].contents.fp64_contents),
                        "model_version": response.model_version, "initial": dict(state.initial_metadata())}
            except grpc.RpcError as error:
                return {"code": error.code().name, "details": error.details(),
                        "initial": dict(error.initial_metadata() or ()),
                        "trailing": dict(error.trailing_metadata() or ())}


        def raw_deadline(model, timeout):
            import h2.config, h2.connection, h2.events
            body = request(model).SerializeToString()
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", TARGET),
                                  (":path", "/inference.GRPCInferenceService/ModelInfer"),
                                  ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", timeout)])
            conn.send_data(1, struct.pack(">BI", 0, len(body)) + body, end_stream=True)
            sock.sendall(conn.data_to_send())
            fields, start, done = {}, time.time(), False
            while not done and time.time() - start < 10:
                data = sock.recv(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        fields.update(dict(event.headers))
                    if isinstance(event, h2.events.StreamEnded):
                        done = True
                sock.sendall(conn.data_to_send())
            return {"status": fields.get("grpc-status"), "message": fields.get("grpc-message")}


        def scenario_remote():
            client = triton.InferenceServerClient(TARGET)
            tensor = triton.InferInput("input-0", [2, 4], "FP64")
            tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64))
            triton_answer = client.infer("up", [tensor], headers={"x-app": "triton"})
            return {
                "triton": {"predict": triton_answer.as_numpy("predict").tolist(),
                           "version": triton_answer.get_response().model_version},
                "up": infer("up", metadata=[("x-app", "raw"), ("x-request-id", "rid-42")]),
                "down": infer("down"),
                "downfb": infer("downfb"),
                "missing": infer("missing"),
                "missingfb": infer("missingfb"),
                "dead": infer("dead"),
                "deadline": raw_deadline("slow", "300m"),
            }


        def scenario_concurrent():
            results = []
            lock = threading.Lock()

            def one():
                out = infer("hold")
                with lock:
                    results.append(out["code"])

            threads = [threading.Thread(target=one) for _ in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return {"ok": results.count("OK"), "codes": sorted(set(results))}


        def scenario_shadow():
            return {"live_embedded": [infer("sh") for _ in range(3)], "live_remote": [infer("lg") for _ in range(3)]}


        def scenario_one():
            return infer("up")


        print(json.dumps(globals()["scenario_" + SCENARIO]()))
        """#

    static let scriptPath: String = {
        let path = NSTemporaryDirectory() + "switchyard-grpc-remote-client-\(getpid()).py"
        try? source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    static func scenario(_ name: String, port: Int) throws -> [String: Any] {
        let (status, output) = runProcess(
            try GRPCClients.python.get(),
            [scriptPath, name, String(port), try GRPCClients.stubs.get()]
        )
        guard status == 0, let line = output.split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else {
            throw TestFailure("gRPC client scenario \(name) failed (\(status)):\n\(output)")
        }
        return object
    }
}

/// Remote gRPC versions (SPEC §13 "Backends", "Errors"): calls pass through a `grpc://` version
/// over pooled HTTP/2, the backend's own statuses reach the client, the failing ones are caught
/// by `fallback`, deadlines shorten, shadows compare on the REST rendering, and calls share a
/// connection. A fake grpcio server is the upstream; its call log is the oracle.
@Suite(.serialized) struct GRPCRemoteTests {
    static func route(_ model: String) -> String {
        "  - { name: \(model)-grpc, match: { grpc: inference.GRPCInferenceService/ModelInfer, model: \(model) }, model: \(model), protocol: v2-grpc }"
    }

    static var models: String { GRPCClients.packageRoot.appendingPathComponent("examples/models").path }

    /// A policy whose one version `r` is `url` (plus `extra` policy lines).
    static func remote(_ model: String, _ url: String, versionExtra: String = "", extra: String = "") -> String {
        """
        model: \(model)
        versions:
          r: { url: "\(url)", timeout_ms: 5000\(versionExtra) }
          stable: { embedded: linear, file: \(models)/churn-linear-v1.json }
        split: { r: 100 }
        \(extra)
        """
    }

    static func object(_ value: Any?) -> [String: Any] { value as? [String: Any] ?? [:] }
    static func doubles(_ value: Any?) -> [Double] {
        (value as? [Any])?.compactMap { ($0 as? NSNumber)?.doubleValue } ?? []
    }

    @Test func callsPassThroughAndBackendStatusesAreKept() throws {
        let upstream = try FakeGRPCUpstream()
        defer { upstream.stop() }
        let url = "grpc://127.0.0.1:\(upstream.port)"
        let dead = deadPort()
        let models = ["up", "down", "downfb", "missing", "missingfb", "dead", "slow"]
        let config = try TempConfig(
            routes: "routes:\n" + models.map(Self.route).joined(separator: "\n"),
            policies: [
                "up": Self.remote("up", url),
                "down": Self.remote("down", url),
                "downfb": Self.remote("downfb", url, extra: "fallback: stable"),
                "missing": Self.remote("missing", url),
                "missingfb": Self.remote("missingfb", url, extra: "fallback: stable"),
                "dead": Self.remote("dead", "grpc://127.0.0.1:\(dead)"),
                "slow": Self.remote("slow", url),
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let result = try GRPCRemoteClientScript.scenario("remote", port: sidecar.port)

        // tritonclient.grpc gets the upstream's own answer.
        let triton = Self.object(result["triton"])
        #expect(Self.doubles(triton["predict"]) == [0.25, 0.75], "\(result)")
        #expect(triton["version"] as? String == "up")

        // The upstream's initial metadata and the sidecar's fields; the call's metadata reached
        // the upstream with the request id, x-forwarded-for, and without hop-by-hop fields.
        let up = Self.object(result["up"])
        #expect(up["code"] as? String == "OK", "\(up)")
        #expect(Self.doubles(up["predict"]) == [0.25, 0.75])
        let initial = Self.object(up["initial"])
        #expect(initial["x-switchyard-version"] as? String == "r")
        #expect(initial["x-upstream"] as? String == "fake")
        #expect(initial["x-request-id"] as? String == "rid-42")
        let seen = try #require(upstream.calls.first { Self.object($0["meta"])["x-app"] as? String == "raw" })
        let meta = Self.object(seen["meta"])
        #expect(seen["model"] as? String == "up")
        #expect(meta["x-request-id"] as? String == "rid-42")
        #expect(meta["x-forwarded-for"] as? String == "127.0.0.1")
        #expect(meta["x-switchyard-shadow"] == nil)

        // A backend's UNAVAILABLE without a fallback: its own status and message.
        let down = Self.object(result["down"])
        #expect(down["code"] as? String == "UNAVAILABLE", "\(down)")
        #expect(down["details"] as? String == "backend down for maintenance")
        // With a fallback, the embedded version answers and says which version failed.
        let downfb = Self.object(result["downfb"])
        #expect(downfb["code"] as? String == "OK", "\(downfb)")
        #expect(Self.object(downfb["initial"])["x-switchyard-version"] as? String == "stable")
        #expect(Self.object(downfb["initial"])["x-switchyard-fallback"] as? String == "r")
        #expect(downfb["model_version"] as? String == "stable")

        // NOT_FOUND is the app's own mistake: passed through, never a fallback.
        let missing = Self.object(result["missing"])
        #expect(missing["code"] as? String == "NOT_FOUND", "\(missing)")
        #expect(missing["details"] as? String == "no model called missing here")
        let missingWithFallback = Self.object(result["missingfb"])
        #expect(missingWithFallback["code"] as? String == "NOT_FOUND", "\(missingWithFallback)")
        let missingFields = Self.object(missingWithFallback["initial"]).merging(
            Self.object(missingWithFallback["trailing"]),
            uniquingKeysWith: { first, _ in first }
        )
        #expect(missingFields["x-switchyard-version"] as? String == "r")
        #expect(missingFields["x-switchyard-fallback"] == nil)

        // A dead port is UNAVAILABLE; a deadline shorter than the version's timeout ends the
        // call before the slow upstream answers.
        let deadCall = Self.object(result["dead"])
        #expect(deadCall["code"] as? String == "UNAVAILABLE", "\(deadCall)")
        let deadline = Self.object(result["deadline"])
        #expect(deadline["status"] as? String == "4", "\(deadline)")

        let metrics = ShadowTests.metrics(sidecar)
        for (model, code) in [("up", 200), ("down", 503), ("missing", 404), ("dead", 502), ("slow", 504)] {
            let series =
                #"switchyard_requests_total{route="\#(model)-grpc",model="\#(model)",version="r",role="live",code="\#(code)"}"#
            #expect(metrics.contains(series), "\(series)")
        }
        #expect(
            metrics.contains(#"switchyard_fallbacks_total{model="downfb",from_version="r",to_version="stable"}"#)
        )
    }

    @Test func concurrentCallsShareOneUpstreamConnection() throws {
        let upstream = try FakeGRPCUpstream()
        defer { upstream.stop() }
        let config = try TempConfig(
            routes: "routes:\n" + Self.route("hold"),
            policies: ["hold": Self.remote("hold", "grpc://127.0.0.1:\(upstream.port)")]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, workers: 1)
        defer { sidecar.stop() }
        let result = try GRPCRemoteClientScript.scenario("concurrent", port: sidecar.port)
        #expect(result["ok"] as? Int == 40, "\(result)")
        let calls = upstream.calls
        #expect(calls.count == 40)
        // Many calls were in progress at once, all on one connection (one client peer).
        #expect(Set(calls.compactMap { $0["peer"] as? String }).count == 1)
        #expect((calls.compactMap { $0["most"] as? Int }.max() ?? 0) > 1)
    }

    @Test func shadowsToAndFromGRPCVersionsCompareTheRESTRendering() throws {
        let upstream = try FakeGRPCUpstream()
        defer { upstream.stop() }
        let url = "grpc://127.0.0.1:\(upstream.port)"
        let log = NSTemporaryDirectory() + "switchyard-grpc-remote-cmp-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let compare = "compare: { output: /outputs/0/data, tolerance: 0.01, log: \(log) }"
        let config = try TempConfig(
            routes: "routes:\n" + Self.route("sh") + "\n" + Self.route("lg"),
            policies: [
                // Live embedded, shadow remote gRPC.
                "sh": """
                model: sh
                versions:
                  live: { embedded: linear, file: \(Self.models)/churn-linear-v1.json }
                  g: { url: "\(url)" }
                split: { live: 100 }
                shadow:
                  - { version: g, percent: 100 }
                \(compare)
                """,
                // Live remote gRPC, shadow embedded.
                "lg": """
                model: lg
                versions:
                  g: { url: "\(url)" }
                  emb: { embedded: linear, file: \(Self.models)/churn-linear-v1.json }
                split: { g: 100 }
                shadow:
                  - { version: emb, percent: 100 }
                \(compare)
                """,
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let result = try GRPCRemoteClientScript.scenario("shadow", port: sidecar.port)
        let liveEmbedded = (result["live_embedded"] as? [Any] ?? []).map(Self.object)
        let liveRemote = (result["live_remote"] as? [Any] ?? []).map(Self.object)
        #expect(liveEmbedded.count == 3 && liveEmbedded.allSatisfy { $0["code"] as? String == "OK" }, "\(result)")
        #expect(liveRemote.allSatisfy { Self.doubles($0["predict"]) == [0.25, 0.75] }, "\(result)")
        let embedded = Self.doubles(liveEmbedded.first?["predict"])
        #expect(embedded.count == 2)

        var records: [[String: Any]] = []
        #expect(
            eventually {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                records = text.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
                return records.count == 6
            },
            "\(records)"
        )
        for record in records {
            let isShadowRemote = record["model"] as? String == "sh"
            let live = Self.object(record["live"])
            let shadow = Self.object(record["shadow"])
            let remoteSide = isShadowRemote ? shadow : live
            let embeddedSide = isShadowRemote ? live : shadow
            #expect(Self.doubles(remoteSide["output"]) == [0.25, 0.75], "\(record)")
            #expect(Self.doubles(embeddedSide["output"]) == embedded, "\(record)")
            #expect(record["outcome"] as? String == "mismatch", "\(record)")
        }
        // The shadow copies reached the upstream marked as shadows.
        let shadowCalls = upstream.calls.filter { $0["model"] as? String == "sh" }
        #expect(shadowCalls.count == 3)
        #expect(shadowCalls.allSatisfy { Self.object($0["meta"])["x-switchyard-shadow"] as? String == "1" })
    }

    @Test func grpcsVersionsSpeakTLSWithALPNH2() throws {
        let pki = try TestPKI.shared()
        let upstream = try FakeGRPCUpstream(tls: (pki.serverCert, pki.serverKey))
        defer { upstream.stop() }
        let config = try TempConfig(
            routes: "routes:\n" + Self.route("up"),
            policies: [
                "up": Self.remote(
                    "up",
                    "grpcs://localhost:\(upstream.port)",
                    versionExtra: #", tls: { ca_file: "\#(pki.caFile)" }"#
                )
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let result = try GRPCRemoteClientScript.scenario("one", port: sidecar.port)
        #expect(result["code"] as? String == "OK", "\(result)")
        #expect(Self.doubles(result["predict"]) == [0.25, 0.75])
        #expect(Self.object(result["initial"])["x-switchyard-version"] as? String == "r")
    }

    @Test func grpcsContextsOfferH2AndBadFilesAreDiagnostics() throws {
        let pki = try TestPKI.shared()
        let tls = #"tls: { ca_file: "\#(pki.caFile)" }"#
        let config = try TempConfig(
            routes: """
                routes:
                \(Self.route("g"))
                  - { name: h, match: { path: /v2/models/h/infer, method: POST }, model: h, protocol: v2 }
                """,
            policies: [
                "g": "model: g\nversions:\n  r: { url: \"grpcs://localhost:1\", \(tls) }\nsplit: { r: 100 }\n",
                "h": "model: h\nversions:\n  r: { url: \"https://localhost:1\", \(tls) }\nsplit: { r: 100 }\n",
            ]
        )
        defer { config.remove() }
        // The same `tls` settings make one context per ALPN: `h2` for grpcs, `http/1.1` for https.
        let snapshot = try ConfigSnapshot.load(directory: config.path).get()
        let grpcContext = try #require(snapshot.grpcTLSContexts.values.first)
        let httpContext = try #require(snapshot.tlsContexts.values.first)
        #expect(snapshot.grpcTLSContexts.count == 1 && snapshot.tlsContexts.count == 1)
        #expect(grpcContext.alpnProtocols == ["h2"])
        #expect(httpContext.alpnProtocols == ["http/1.1"])
        #expect(grpcContext !== httpContext)

        // A CA file OpenSSL refuses is a diagnostic at the grpcs version.
        try config.write("bad-ca.pem", "not a certificate\n")
        try config.write(
            "policies/g.yaml",
            "model: g\nversions:\n  r: { url: \"grpcs://localhost:1\", tls: { ca_file: \"\(config.path)/bad-ca.pem\" } }\nsplit: { r: 100 }\n"
        )
        switch ConfigSnapshot.load(directory: config.path) {
        case .success: Issue.record("a grpcs version with a bad CA file loaded")
        case .failure(let diagnostics):
            #expect(
                diagnostics.contains { "\($0)".contains("version 'r': tls:") && "\($0)".contains("g.yaml") },
                "\(diagnostics)"
            )
        }
    }

    @Test func aReloadMovesCallsToTheNewUpstream() throws {
        let first = try FakeGRPCUpstream()
        defer { first.stop() }
        let second = try FakeGRPCUpstream()
        defer { second.stop() }
        let config = try TempConfig(
            routes: "routes:\n" + Self.route("up"),
            policies: ["up": Self.remote("up", "grpc://127.0.0.1:\(first.port)")]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.configPollMilliseconds = 50 }
        defer { sidecar.stop() }
        #expect(try GRPCRemoteClientScript.scenario("one", port: sidecar.port)["code"] as? String == "OK")
        try config.write("policies/up.yaml", Self.remote("up", "grpc://127.0.0.1:\(second.port)"))
        eventually { sidecar.sidecar.snapshot.generation != 1 }
        #expect(sidecar.sidecar.snapshot.generation == 2)
        let after = try GRPCRemoteClientScript.scenario("one", port: sidecar.port)
        #expect(after["code"] as? String == "OK", "\(after)")
        #expect(first.calls.count == 1)
        #expect(second.calls.count == 1)
    }
}

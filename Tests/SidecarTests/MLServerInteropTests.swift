import EventHTTP
import Foundation
import Testing

@testable import Sidecar

#if canImport(Glibc)
import Glibc
#endif

/// The venv `scripts/test-venv mlserver` makes: a real MLServer with its XGBoost runtime, and
/// tritonclient.grpc to call it and the sidecar with. Made once per test run; a failure to make
/// it is a test failure, not a skip, so CI cannot pass without having run the interop test.
enum MLServerVenv {
    static let python: Result<String, TestFailure> = {
        let script = GRPCClients.packageRoot.appendingPathComponent("scripts/test-venv").path
        let (status, output) = runProcess("/bin/bash", [script, "mlserver"])
        let path = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init)
        guard status == 0, let path, FileManager.default.isExecutableFile(atPath: path) else {
            return .failure(
                TestFailure(
                    "the MLServer interop test needs python3 with venv and pip to install mlserver, "
                        + "mlserver-xgboost and tritonclient[grpc]; `scripts/test-venv mlserver` failed (\(status)): \(output)"
                )
            )
        }
        return .success(path)
    }()
}

/// A real MLServer serving `examples/models/churn-xgb-v3.json` through `mlserver_xgboost`, on
/// free loopback ports, in its own process group (its Python children go with it), stopped by
/// signalling that group at the end.
final class MLServerProcess {
    let httpPort: Int
    let grpcPort: Int
    let directory: String
    let pid: pid_t
    private let process = Process()

    var log: String { (try? String(contentsOfFile: directory + "/mlserver.log", encoding: .utf8)) ?? "" }

    init(python: String) throws {
        // Three distinct free ports: hold every socket until all are known.
        let sockets = (0..<3).map { _ in Net.listenSocket() }
        for (fd, _) in sockets { close(fd) }
        httpPort = sockets[0].1
        grpcPort = sockets[1].1
        let metricsPort = sockets[2].1
        directory = NSTemporaryDirectory() + "switchyard-mlserver-" + UUID().uuidString
        let model = GRPCClients.packageRoot.appendingPathComponent("examples/models/churn-xgb-v3.json")
        try FileManager.default.createDirectory(atPath: directory + "/churn", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: model.path, toPath: directory + "/churn/model.json")
        let settings: [String: Any] = [
            "host": "127.0.0.1", "http_port": httpPort, "grpc_port": grpcPort, "metrics_port": metricsPort,
            "parallel_workers": 0, "debug": false,
        ]
        let modelSettings: [String: Any] = [
            "name": "churn", "implementation": "mlserver_xgboost.XGBoostModel", "parameters": ["uri": "./model.json"],
        ]
        try JSONSerialization.data(withJSONObject: settings).write(
            to: URL(fileURLWithPath: directory + "/settings.json")
        )
        try JSONSerialization.data(withJSONObject: modelSettings)
            .write(to: URL(fileURLWithPath: directory + "/churn/model-settings.json"))
        let mlserver = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("mlserver").path
        // Opening it for writing (next line) fails if it could not be made.
        _ = FileManager.default.createFile(atPath: directory + "/mlserver.log", contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/mlserver.log"))
        // Its own process group (Foundation may already have made one), then exec: the group's
        // id is the PID we hold.
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            "-c",
            "import os, sys; os.getpgid(0) == os.getpid() or os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])",
            mlserver, "start", directory,
        ]
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        pid = process.processIdentifier
        eventually { getpgid(pid) == pid }
        guard getpgid(pid) == pid else {
            stop()
            throw TestFailure("MLServer (pid \(pid)) did not get its own process group")
        }
    }

    /// Polls `/v2/health/ready` until MLServer says it (and so its model) is ready, up to
    /// `seconds`; throws with MLServer's log if it exits or never gets there.
    func waitUntilReady(seconds: Double = 240) throws {
        let ready = eventually(within: seconds, every: 0.25) {
            !process.isRunning
                || (httpRequest(port: httpPort, "GET", "/v2/health/ready")?.status == 200
                    && httpRequest(port: httpPort, "GET", "/v2/models/churn/ready")?.status == 200)
        }
        if !process.isRunning {
            throw TestFailure("MLServer exited (\(process.terminationStatus)) before it was ready:\n\(log)")
        }
        if ready { return }
        throw TestFailure("MLServer was not ready within \(Int(seconds)) s:\n\(log)")
    }

    /// SIGTERM to the whole group, SIGKILL after 20 s, then the scratch directory goes.
    func stop() {
        if process.isRunning {
            kill(-pid, SIGTERM)
            eventually(within: 20, every: 0.1) { !process.isRunning }
        }
        kill(-pid, SIGKILL)  // stragglers of the group, if any; ESRCH otherwise
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The client side: `python3 script SIDECAR_PORT MLSERVER_GRPC_PORT MLSERVER_HTTP_PORT` prints
/// one JSON object. For each datatype (FP32, FP64) and the same rows, MLServer's own answers
/// (gRPC through tritonclient, REST through its JSON endpoint) and the sidecar's, pinned to each
/// version through tritonclient (raw tensors, as tritonclient sends them), plus one raw-stub call
/// per version for the initial metadata, and unpinned calls that the split sends to `grpc`.
enum MLServerClientScript {
    static let source = #"""
        import json, sys, urllib.request
        import grpc
        import numpy as np
        import tritonclient.grpc as triton
        from tritonclient.grpc import service_pb2 as v2

        SIDECAR, ML_GRPC, ML_HTTP = (int(p) for p in sys.argv[1:4])
        ROWS = [[12, 70.5, 1, 0], [3, 20.0, 0, 1], [48, 99.9, 5, 24], [1, 18.25, 0, 0], [30, 55.1, 2, 12]]
        DTYPES = {"FP32": np.float32, "FP64": np.float64}


        def triton_infer(port, datatype, version=""):
            client = triton.InferenceServerClient("127.0.0.1:%d" % port)
            x = np.array(ROWS, dtype=DTYPES[datatype])
            tensor = triton.InferInput("input-0", list(x.shape), datatype)
            tensor.set_data_from_numpy(x)
            result = client.infer("churn", [tensor], model_version=version)
            response = result.get_response()
            output = response.outputs[0]
            return {"predict": result.as_numpy(output.name).astype(float).flatten().tolist(),
                    "name": output.name, "datatype": output.datatype, "shape": list(output.shape),
                    "raw": len(response.raw_output_contents) > 0, "model_version": response.model_version}


        def rest_infer(datatype):
            body = json.dumps({"inputs": [{"name": "input-0", "datatype": datatype, "shape": [len(ROWS), 4],
                                           "data": [x for row in ROWS for x in row]}]}).encode()
            request = urllib.request.Request("http://127.0.0.1:%d/v2/models/churn/infer" % ML_HTTP, data=body,
                                             headers={"content-type": "application/json"})
            answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            output = answer["outputs"][0]
            return {"predict": [float(v) for v in np.array(output["data"]).flatten()], "datatype": output["datatype"],
                    "shape": output["shape"]}


        def metadata(version):
            """A raw tensor call with a plain stub: the initial metadata tritonclient hides."""
            channel = grpc.insecure_channel("127.0.0.1:%d" % SIDECAR)
            stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=v2.ModelInferRequest.SerializeToString,
                                       response_deserializer=v2.ModelInferResponse.FromString)
            request = v2.ModelInferRequest(model_name="churn", model_version=version, id="meta-1")
            request.inputs.add(name="input-0", datatype="FP64", shape=[len(ROWS), 4])
            request.raw_input_contents.append(np.array(ROWS, dtype="<f8").tobytes())
            try:
                _, state = stub.with_call(request, timeout=30)
                return {"code": "OK", "initial": dict(state.initial_metadata())}
            except grpc.RpcError as error:
                return {"code": error.code().name, "details": error.details()}


        out = {}
        for datatype in DTYPES:
            out[datatype] = {
                "mlserver_grpc": triton_infer(ML_GRPC, datatype),
                "mlserver_rest": rest_infer(datatype),
                "unpinned": triton_infer(SIDECAR, datatype),
            }
            for version in ("grpc", "rest", "emb"):
                try:
                    out[datatype][version] = triton_infer(SIDECAR, datatype, version)
                except Exception as error:  # the test prints what went wrong
                    out[datatype][version] = {"error": str(error)}
        out["metadata"] = {version: metadata(version) for version in ("grpc", "rest", "emb")}
        print(json.dumps(out))
        """#

    static func run(python: String, sidecar: Int, mlserver: MLServerProcess) throws -> [String: Any] {
        let path = NSTemporaryDirectory() + "switchyard-mlserver-client-\(getpid()).py"
        try Data(source.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        let (status, output) = runProcess(
            python,
            [path, String(sidecar), String(mlserver.grpcPort), String(mlserver.httpPort)]
        )
        guard status == 0, let line = output.split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else {
            throw TestFailure("the MLServer client script failed (\(status)):\n\(output)")
        }
        return object
    }
}

/// A real MLServer behind the sidecar's gRPC route (issue 12): its gRPC port as a `grpc://`
/// version and its HTTP port as a `v2` REST version the sidecar translates to and from, beside
/// the same model embedded. The oracle is MLServer itself, called directly with the same rows:
/// a user who moves a tritonclient from MLServer to the sidecar must get the same numbers back.
@Suite(.serialized) struct MLServerInteropTests {
    static func object(_ value: Any?) -> [String: Any] { value as? [String: Any] ?? [:] }
    static func doubles(_ value: Any?) -> [Double] {
        (value as? [Any])?.compactMap { ($0 as? NSNumber)?.doubleValue } ?? []
    }

    /// The first index where `a` and `b` differ by more than `relative` (of the larger), or the
    /// lengths differ; nil when they agree.
    static func disagreement(_ a: [Double], _ b: [Double], relative: Double) -> String? {
        guard a.count == b.count, !a.isEmpty else { return "lengths \(a.count) and \(b.count)" }
        for (i, (x, y)) in zip(a, b).enumerated() where abs(x - y) > relative * max(abs(x), abs(y)) {
            return "row \(i): \(x) vs \(y)"
        }
        return nil
    }

    @Test func mlserverBehindGRPCAndRESTVersionsAnswersAsMLServerDoes() throws {
        let python = try MLServerVenv.python.get()
        let mlserver = try MLServerProcess(python: python)
        defer { mlserver.stop() }
        try mlserver.waitUntilReady()

        let model = GRPCClients.packageRoot.appendingPathComponent("examples/models/churn-xgb-v3.json").path
        let log = NSTemporaryDirectory() + "switchyard-mlserver-cmp-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let config = try TempConfig(
            routes: """
                routes:
                  - { name: churn-grpc, match: { grpc: inference.GRPCInferenceService/ModelInfer, model: churn }, model: churn, protocol: v2-grpc, version_from: message }
                """,
            policies: [
                "churn": """
                model: churn
                versions:
                  grpc: { url: "grpc://127.0.0.1:\(mlserver.grpcPort)", timeout_ms: 30000 }
                  rest: { url: "http://127.0.0.1:\(mlserver.httpPort)", protocol: v2, timeout_ms: 30000 }
                  emb: { embedded: xgboost, file: \(model) }
                split: { grpc: 100 }
                shadow:
                  - { version: emb, percent: 100 }
                compare: { output: /outputs/0/data, tolerance: 0.00001, log: \(log) }
                """
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        let result = try MLServerClientScript.run(python: python, sidecar: sidecar.port, mlserver: mlserver)
        for datatype in ["FP32", "FP64"] {
            let answers = Self.object(result[datatype])
            let ownGRPC = Self.object(answers["mlserver_grpc"])
            let ownREST = Self.object(answers["mlserver_rest"])
            let own = Self.doubles(ownGRPC["predict"])
            #expect(own.count == 5, "\(datatype): MLServer's own gRPC answer: \(ownGRPC)")
            // MLServer agrees with itself across its two ports (a sanity check of the oracle).
            #expect(Self.disagreement(Self.doubles(ownREST["predict"]), own, relative: 1e-6) == nil, "\(answers)")

            // Unpinned, the split sends the call to `grpc`: MLServer's own gRPC answer, as it
            // sent it (same values, datatype, shape, raw contents).
            let unpinned = Self.object(answers["unpinned"])
            Self.expectSameAnswer(unpinned, ownGRPC, "\(datatype) unpinned")
            // Pinned to `grpc` with the message's model_version: the same answer is what a user
            // expects, but the sidecar forwards model_version "grpc" (its own version name) to
            // MLServer, which has no such version and answers NOT_FOUND.
            Self.expectSameAnswer(Self.object(answers["grpc"]), ownGRPC, "\(datatype) pinned grpc")

            // Pinned to `rest`: MLServer's JSON answer translated to gRPC; what the user reads
            // equals MLServer's own to float precision, on either of its ports.
            let viaREST = Self.object(answers["rest"])
            let restValues = Self.doubles(viaREST["predict"])
            #expect(
                Self.disagreement(restValues, Self.doubles(ownREST["predict"]), relative: 1e-6) == nil,
                "\(datatype) rest: \(viaREST) vs MLServer REST \(ownREST)"
            )
            #expect(Self.disagreement(restValues, own, relative: 1e-6) == nil, "\(datatype) rest: \(viaREST)")
            #expect(viaREST["raw"] as? Bool == true, "answers mirror the request's raw tensors: \(viaREST)")

            // Pinned to `emb`: the embedded model agrees with MLServer's XGBoost (SPEC §4).
            let viaEmbedded = Self.object(answers["emb"])
            #expect(
                Self.disagreement(Self.doubles(viaEmbedded["predict"]), own, relative: 1e-5) == nil,
                "\(datatype) emb: \(viaEmbedded) vs \(ownGRPC)"
            )
            #expect(viaEmbedded["model_version"] as? String == "emb", "\(viaEmbedded)")
        }

        // Every pin was honoured, and said so in the initial metadata.
        let metadata = Self.object(result["metadata"])
        for version in ["grpc", "rest", "emb"] {
            let call = Self.object(metadata[version])
            #expect(call["code"] as? String == "OK", "\(version): \(call)")
            #expect(Self.object(call["initial"])["x-switchyard-version"] as? String == version, "\(call)")
        }

        // The calls MLServer answered through `grpc` were shadowed to `emb` and compared on the
        // REST rendering: MLServer's FP32 against the embedded FP64, a match at 1e-5.
        let answered = ["FP32", "FP64"].flatMap { datatype in
            ["unpinned", "grpc"].map { Self.object(Self.object(result[datatype])[$0]) }
        }
        let liveGRPC =
            answered.filter { !Self.doubles($0["predict"]).isEmpty }.count
            + (Self.object(metadata["grpc"])["code"] as? String == "OK" ? 1 : 0)
        #expect(liveGRPC >= 2)
        var records: [[String: Any]] = []
        let allLogged = eventually {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            records = text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            .filter {
                Self.object($0["live"])["version"] as? String == "grpc"
                    && Self.object($0["live"])["status"] as? Int == 200
            }
            return records.count >= liveGRPC
        }
        #expect(allLogged, "\(records)")
        #expect(records.count == liveGRPC, "\(records)")
        for record in records {
            #expect(Self.object(record["shadow"])["version"] as? String == "emb", "\(record)")
            #expect(record["outcome"] as? String == "match", "\(record)")
        }
        let metrics = ShadowTests.metrics(sidecar)
        let series =
            #"switchyard_shadow_comparisons_total{model="churn",live_version="grpc",shadow_version="emb",outcome="match"} \#(liveGRPC)"#
        #expect(metrics.contains(series), "\(series) in:\n\(metrics)")
        let none =
            #"switchyard_shadow_comparisons_total{model="churn",live_version="grpc",shadow_version="emb",outcome="mismatch"} 0"#
        #expect(metrics.contains(none), "\(none) in:\n\(metrics)")
    }

    /// `answer` through the sidecar is `own`, MLServer's direct gRPC answer: the same values,
    /// datatype, shape and raw contents (the sidecar passes a gRPC backend's message through).
    static func expectSameAnswer(_ answer: [String: Any], _ own: [String: Any], _ label: String) {
        #expect(doubles(answer["predict"]) == doubles(own["predict"]), "\(label): \(answer) vs \(own)")
        #expect(answer["datatype"] as? String == own["datatype"] as? String, "\(label): \(answer)")
        #expect(answer["shape"] as? [Int] == own["shape"] as? [Int], "\(label): \(answer)")
        #expect(answer["raw"] as? Bool == own["raw"] as? Bool, "\(label): \(answer)")
    }
}

import Foundation

/// The Python gRPC clients the sidecar's gRPC tests drive: `tritonclient.grpc` (the OIP client
/// Triton and KServe users run), `grpcio` with TF Serving message classes that `grpcio-tools`
/// compiles from the vendored protos at test time, and python `h2` for a call whose
/// `grpc-timeout` no client library would leave alone. One scenario per run:
/// `python3 script SCENARIO PORT STUBS_DIR`; it prints one JSON object with what it saw.
enum GRPCClientScript {
    static let source = #"""
        import json, socket, struct, sys, threading, time, urllib.request

        sys.path.insert(0, sys.argv[3])
        import grpc
        import numpy as np
        import tritonclient.grpc as triton
        from tritonclient.grpc import service_pb2 as v2
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

        SCENARIO, PORT = sys.argv[1], int(sys.argv[2])
        TARGET = "127.0.0.1:%d" % PORT
        ROWS = [[12, 70.5, 1, 0], [3, 20.0, 0, 1]]
        channel = grpc.insecure_channel(TARGET)


        def call(method, request, response_class=None, metadata=(), timeout=10):
            """One unary call; what came back, status and metadata included."""
            stub = channel.unary_unary(
                method,
                request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                response_deserializer=(response_class.FromString if response_class else (lambda b: b)),
            )
            try:
                response, state = stub.with_call(request, metadata=list(metadata), timeout=timeout)
                return {"code": "OK", "response": response, "initial": dict(state.initial_metadata()),
                        "trailing": dict(state.trailing_metadata())}
            except grpc.RpcError as error:
                return {"code": error.code().name, "details": error.details(),
                        "initial": dict(error.initial_metadata() or ()), "trailing": dict(error.trailing_metadata() or ())}


        def infer_request(model, rows=ROWS, version="", shape=None):
            request = v2.ModelInferRequest(model_name=model, model_version=version, id="typed-1")
            tensor = request.inputs.add(name="input-0", datatype="FP64", shape=shape or [len(rows), len(rows[0])])
            tensor.contents.fp64_contents.extend([x for row in rows for x in row])
            return request


        def infer(model, metadata=(), **kw):
            out = call("/inference.GRPCInferenceService/ModelInfer", infer_request(model, **kw), v2.ModelInferResponse,
                       metadata=metadata)
            if out["code"] == "OK":
                r = out.pop("response")
                out["typed"] = len(r.raw_output_contents) == 0
                out["predict"] = list(r.outputs[0].contents.fp64_contents) or list(r.outputs[0].contents.fp32_contents)
                out["model_version"] = r.model_version
                out["id"] = r.id
            return out


        def shape(*dims):
            return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


        def predict(model, content):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            array = np.array(ROWS, dtype="<f8")
            if content:
                tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=shape(2, 4), tensor_content=array.tobytes())
            else:
                tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=shape(2, 4), double_val=array.flatten())
            request.inputs["features"].CopyFrom(tensor)
            out = call("/tensorflow.serving.PredictionService/Predict", request, predict_pb2.PredictResponse)
            if out["code"] == "OK":
                r = out.pop("response")
                t = r.outputs["predictions"]
                out["dtype"] = types_pb2.DataType.Name(t.dtype)
                out["content"] = len(t.tensor_content) > 0
                if t.tensor_content:
                    width = 4 if t.dtype == types_pb2.DT_FLOAT else 8
                    out["predictions"] = list(np.frombuffer(t.tensor_content, dtype="<f%d" % width).astype(float))
                else:
                    out["predictions"] = list(t.float_val) or list(t.double_val)
                out["version"] = r.model_spec.version_label or str(r.model_spec.version.value)
            return out


        def scenario_health():
            client = triton.InferenceServerClient(TARGET)
            meta = client.get_model_metadata("churn")
            tf = call("/tensorflow.serving.PredictionService/GetModelMetadata",
                      get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "churn"}, metadata_field=["signature_def"]),
                      get_model_metadata_pb2.GetModelMetadataResponse)
            signature = get_model_metadata_pb2.SignatureDefMap()
            tf["response"].metadata["signature_def"].Unpack(signature)
            serving = signature.signature_def["serving_default"]
            unknown = call("/inference.GRPCInferenceService/ModelMetadata", v2.ModelMetadataRequest(name="nosuch"))
            return {
                "live": client.is_server_live(), "ready": client.is_server_ready(),
                "model_ready": client.is_model_ready("churn"),
                "metadata": {"name": meta.name, "versions": list(meta.versions),
                             "inputs": [[i.name, i.datatype, list(i.shape)] for i in meta.inputs],
                             "outputs": [[o.name, o.datatype] for o in meta.outputs]},
                "tf_metadata": {"name": tf["response"].model_spec.name, "inputs": sorted(serving.inputs.keys()),
                                "outputs": sorted(serving.outputs.keys()), "method": serving.method_name},
                "unknown_model": unknown["code"],
            }


        def scenario_infer():
            client = triton.InferenceServerClient(TARGET)
            x = np.array(ROWS, dtype=np.float64)
            tensor = triton.InferInput("input-0", list(x.shape), "FP64")
            tensor.set_data_from_numpy(x)
            raw = client.infer("churn", [tensor], request_id="raw-1")
            raw_response = raw.get_response()
            return {
                "raw": {"predict": raw.as_numpy("predict").tolist(), "typed": len(raw_response.raw_output_contents) == 0,
                        "version": raw_response.model_version, "id": raw_response.id},
                "typed": infer("churn"),
                "pinned": infer("churn", version="v3"),
                "tf_content": predict("churn", True),
                "tf_typed": predict("churn", False),
            }


        def scenario_errors():
            return {
                "unknown_model": infer("nosuch"),
                "bad_shape": infer("churn", rows=[[1, 2, 3]], shape=[2, 4]),
                "unknown_version": infer("churn", version="v9"),
                "classify": call("/tensorflow.serving.PredictionService/Classify", b""),
                "model_config": call("/inference.GRPCInferenceService/ModelConfig", b""),
                "other_service": call("/foo.Bar/Baz", b""),
                "dead": infer("dead"),
                "fallback": infer("fb"),
                "rest": infer("rest"),
                "rest_error": infer("resterr"),
            }


        def scenario_deadline():
            """A call with grpc-timeout 300m to a version whose own timeout is 5 s; raw h2, which
            leaves the deadline to the server."""
            import h2.config, h2.connection, h2.events
            body = infer_request("slow").SerializeToString()
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", TARGET),
                                  (":path", "/inference.GRPCInferenceService/ModelInfer"),
                                  ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "300m")])
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
            return {"status": fields.get("grpc-status"), "message": fields.get("grpc-message"),
                    "seconds": time.time() - start}


        def scenario_big():
            """A message over the sidecar's --max-grpc-message-bytes."""
            return infer("churn", rows=[[1.5, 2, 3, 4]] * 200)


        def scenario_mixed():
            """HTTP/1.1 and gRPC clients on the one port at once."""
            results = {"rest": 0, "grpc": 0, "rest_answers": [], "grpc_answers": []}
            lock = threading.Lock()

            def rest():
                body = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 4],
                                               "data": [x for row in ROWS for x in row]}]}).encode()
                for _ in range(20):
                    request = urllib.request.Request("http://%s/v2/models/churn/infer" % TARGET, data=body,
                                                     headers={"content-type": "application/json"})
                    answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
                    with lock:
                        results["rest"] += 1
                        results["rest_answers"].append(answer["outputs"][0]["data"])

            def grpc_calls():
                for _ in range(20):
                    out = infer("churn")
                    with lock:
                        if out["code"] == "OK":
                            results["grpc"] += 1
                            results["grpc_answers"].append(out["predict"])

            threads = [threading.Thread(target=f) for f in (rest, rest, grpc_calls, grpc_calls)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results["rest_same"] = all(a == results["rest_answers"][0] for a in results["rest_answers"])
            results["grpc_same"] = all(a == results["grpc_answers"][0] for a in results["grpc_answers"])
            results["rest_answer"] = results.pop("rest_answers")[0]
            results["grpc_answer"] = results.pop("grpc_answers")[0]
            return results


        def plain(value):
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items() if k != "response"}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, (bytes, bytearray)):
                return value.decode("utf-8", "replace")
            if isinstance(value, (np.floating, np.integer)):
                return value.item()
            return value


        print(json.dumps(plain(globals()["scenario_" + SCENARIO]())))
        """#
}

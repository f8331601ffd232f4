import Foundation
import Protos
import SwiftProtobuf
import Testing

@testable import Models

/// A message written by a real client library (scripts/make-grpc-fixtures).
private func fixture(_ name: String) throws -> [UInt8] {
    guard let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
        fatalError("The ModelsTests bundle has no Fixtures folder; check Package.swift's resources.")
    }
    return Array(try Data(contentsOf: folder.appendingPathComponent("grpc/\(name)")))
}

private func bytes<M: Message>(_ message: M) throws -> [UInt8] { try message.serializedBytes() }

/// The detail of the `ModelError` that `body` throws; nil when it throws none.
private func errorDetail(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as ModelError {
        return error.detail
    } catch {
        return "not a ModelError: \(error)"
    }
}

/// The detail of the `UpstreamResponseError` that `body` throws; nil when it throws none.
private func upstreamError(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as UpstreamResponseError {
        return error.detail
    } catch {
        return "not an UpstreamResponseError: \(error)"
    }
}

/// Values every numeric datatype holds, with its extremes where a Double holds them exactly.
private func sampleValues(_ datatype: OIPDatatype) -> [Double] {
    switch datatype {
    case .bool: [1, 0, 0, 1, 1, 0]
    case .uint8: [0, 1, 2, 3, 254, 255]
    case .uint16: [0, 1, 2, 300, 65_534, 65_535]
    case .uint32: [0, 1, 2, 70_000, 4_294_967_294, 4_294_967_295]
    case .uint64: [0, 1, 2, 0x1p40, 0x1p53, 0x1p63]
    case .int8: [-128, -1, 0, 1, 2, 127]
    case .int16: [-32_768, -1, 0, 1, 300, 32_767]
    case .int32: [-2_147_483_648, -1, 0, 1, 70_000, 2_147_483_647]
    case .int64: [-0x1p63, -1, 0, 1, 0x1p53, -0x1p40]
    case .fp16: [0, 1, -2.5, 0.0999755859375, 65_504, -0.00006103515625]
    case .fp32: [0, 1, -2.5, Double(Float(0.1)), Double(Float.greatestFiniteMagnitude), .nan]
    case .fp64: [0, 1, -2.5, 0.1, 1e300, .nan]
    case .bytes: []
    }
}

private func sameValues(_ a: [Double], _ b: [Double]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
}

private let numericDatatypes = OIPDatatype.allCases.filter { $0 != .bytes }

struct GRPCOIPCodecTests {
    private func request(
        _ tensor: OIPTensor,
        encoding: GRPCTensorEncoding
    ) throws -> Inference_ModelInferRequest {
        // Built with the response writer, then moved into a request, so both directions meet.
        let response = try GRPCOIPCodec.inferResponse(
            outputs: [tensor],
            modelName: "m",
            modelVersion: "",
            encoding: encoding
        )
        var message = Inference_ModelInferRequest()
        message.modelName = "m"
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = response.outputs[0].name
        input.datatype = response.outputs[0].datatype
        input.shape = response.outputs[0].shape
        if response.outputs[0].hasContents { input.contents = response.outputs[0].contents }
        message.inputs = [input]
        message.rawInputContents = response.rawOutputContents
        return message
    }

    @Test(arguments: numericDatatypes, [GRPCTensorEncoding.typed, .raw])
    func everyNumericDatatypeRoundTrips(_ datatype: OIPDatatype, _ encoding: GRPCTensorEncoding) throws {
        let tensor = OIPTensor(
            name: "x",
            datatype: datatype,
            tensor: NumericTensor(shape: [2, 3], values: sampleValues(datatype))
        )
        let message = try request(tensor, encoding: encoding)
        // FP16 has no typed field: it is always raw.
        #expect(GRPCOIPCodec.encoding(of: message) == (datatype == .fp16 ? .raw : encoding))
        let decoded = try GRPCOIPCodec.oipRequest(
            try GRPCOIPCodec.decodeInferRequest(try bytes(message))
        ).inputs[0]
        #expect(decoded.name == "x")
        #expect(decoded.datatype == datatype)
        #expect(decoded.shape == [2, 3])
        #expect(sameValues(decoded.values, tensor.values), "\(decoded.values) != \(tensor.values)")
    }

    @Test(arguments: [GRPCTensorEncoding.typed, .raw])
    func rawAnswersRawAndTypedAnswersTyped(_ encoding: GRPCTensorEncoding) throws {
        let response = try GRPCOIPCodec.inferResponse(
            predictions: [0.25, 0.5],
            modelName: "churn",
            modelVersion: "2",
            id: "r1",
            encoding: encoding
        )
        #expect(response.outputs.map(\.name) == ["predict"])
        #expect(response.outputs[0].datatype == "FP64")
        #expect(response.outputs[0].shape == [2])
        if encoding == .raw {
            #expect(!response.outputs[0].hasContents)
            #expect(response.rawOutputContents == [Data([0, 0, 0, 0, 0, 0, 0xD0, 0x3F, 0, 0, 0, 0, 0, 0, 0xE0, 0x3F])])
        } else {
            #expect(response.rawOutputContents.isEmpty)
            #expect(response.outputs[0].contents.fp64Contents == [0.25, 0.5])
        }
    }

    @Test func shapeMismatchesGiveTheJSONCodecsErrors() throws {
        var message = Inference_ModelInferRequest()
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = "x"
        input.datatype = "FP64"
        input.shape = [2, 4]
        input.contents.fp64Contents = [1, 2, 3, 4, 5, 6]
        message.inputs = [input]
        let typed = errorDetail { _ = try GRPCOIPCodec.oipRequest(message) }
        let json = errorDetail {
            _ = try OIPCodec.decodeRequest(
                ["inputs": [["name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]]]]
            )
        }
        #expect(typed == "input 'x': shape [2, 4] has 8 elements but data has 6")
        #expect(typed == json)

        message.inputs[0].contents = Inference_InferTensorContents()
        message.inputs[0].datatype = "FP32"
        message.rawInputContents = [Data(count: 30)]
        #expect(
            errorDetail { _ = try GRPCOIPCodec.oipRequest(message) }
                == "input 'x': shape [2, 4] has 8 elements of 4 bytes (FP32), 32 bytes,"
                + " but raw_input_contents[0] has 30 bytes"
        )
    }

    @Test func malformedMessagesAreReadableBadRequests() throws {
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = "x"
        input.datatype = "FP32"
        input.shape = [2]
        var message = Inference_ModelInferRequest()
        message.inputs = [input]

        func detail(_ change: (inout Inference_ModelInferRequest) -> Void) -> String? {
            var copy = message
            change(&copy)
            return errorDetail { _ = try GRPCOIPCodec.oipRequest(copy) }
        }
        #expect(
            errorDetail { _ = try GRPCOIPCodec.decodeInferRequest([0x2A, 0x05, 0x0A]) }?
                .hasPrefix("request message is not a valid inference.ModelInferRequest (protobuf: ") == true
        )
        #expect(detail { $0.inputs = [] } == "'inputs' is empty; expected at least one tensor")
        #expect(
            detail { $0.inputs[0].datatype = "FP8" }?.hasPrefix(
                "input 'x': unknown datatype 'FP8'; expected one of BOOL"
            )
                == true
        )
        #expect(
            detail {
                $0.inputs[0].datatype = "BYTES"
                $0.inputs[0].contents.bytesContents = [Data("a".utf8), Data("b".utf8)]
            } == "input 'x': datatype BYTES is not supported; expected a numeric datatype such as FP64"
        )
        #expect(detail { $0.inputs[0].shape = [-1] } == "input 'x': shape entry -1 is not a non-negative integer")
        #expect(
            detail { $0.inputs[0].contents.fp64Contents = [1, 2] }
                == "input 'x': datatype FP32 takes fp32_contents, but the contents hold fp64_contents"
        )
        #expect(
            detail {
                $0.inputs[0].datatype = "INT8"
                $0.inputs[0].contents.intContents = [1, 300]
            } == "input 'x': element 1 is 300; expected a whole number in the INT8 range"
        )
        #expect(
            detail {
                $0.inputs[0].datatype = "FP16"
                $0.inputs[0].contents.fp32Contents = [1, 2]
            } == "input 'x': FP16 has no typed contents field; send it in raw_input_contents"
        )
        #expect(
            detail { $0.rawInputContents = [Data(count: 8), Data(count: 8)] }
                == "raw_input_contents has 2 entries but the request has 1 inputs; expected one per input, in order"
        )
        #expect(
            detail {
                $0.inputs[0].contents.fp32Contents = [1, 2]
                $0.rawInputContents = [Data(count: 8)]
            } == "input 'x' has both contents and raw_input_contents; send one"
        )
    }

    @Test(arguments: numericDatatypes, [GRPCTensorEncoding.typed, .raw])
    func restRenderingEqualsTheJSONCodecs(_ datatype: OIPDatatype, _ encoding: GRPCTensorEncoding) throws {
        let outputs = [
            OIPTensor(
                name: "predict",
                datatype: datatype,
                tensor: NumericTensor(shape: [3, 2], values: sampleValues(datatype))
            ),
            OIPTensor(name: "p2", datatype: .fp64, tensor: NumericTensor(shape: [1], values: [0.1])),
        ]
        let rest = try JSONParser.parse(
            OIPCodec.encodeResponse(outputs: outputs, modelName: "churn", modelVersion: "2", id: "r9")
        )
        let response = try GRPCOIPCodec.decodeInferResponse(
            try bytes(
                try GRPCOIPCodec.inferResponse(
                    outputs: outputs,
                    modelName: "churn",
                    modelVersion: "2",
                    id: "r9",
                    encoding: encoding
                )
            )
        )
        let rendered = try GRPCOIPCodec.restRendering(of: response)
        #expect(rendered == rest, "\(rendered) != \(rest)")
        #expect(rendered.value(at: try JSONPointer("/outputs/0/data")) != nil)
    }

    @Test(arguments: [GRPCTensorEncoding.typed, .raw])
    func aRESTAnswerBecomesTheGRPCResponse(_ encoding: GRPCTensorEncoding) throws {
        let body: JSON = [
            "model_name": "churn", "model_version": "3", "id": "a",
            "outputs": [["name": "predict", "datatype": "FP32", "shape": [2], "data": [0.5, 1.25]]],
        ]
        let response = try GRPCOIPCodec.inferResponse(fromREST: body, encoding: encoding)
        #expect(response.modelName == "churn")
        #expect(response.modelVersion == "3")
        #expect(response.rawOutputContents.isEmpty == (encoding == .typed))
        #expect(try GRPCOIPCodec.restRendering(of: response) == body)
        #expect(
            upstreamError { _ = try GRPCOIPCodec.inferResponse(fromREST: ["outputs": []], encoding: encoding) }
                == "v2 response has no \"outputs\" list of tensors"
        )
    }

    @Test func theRESTRequestBodyIsWhatOIPCodecReads() throws {
        let message = try GRPCOIPCodec.decodeInferRequest(try fixture("triton-raw-fp32.bin"))
        let body = try JSONParser.parse(try GRPCOIPCodec.restRequestBody(message))
        #expect(try OIPCodec.decodeRequest(body) == (try GRPCOIPCodec.oipRequest(message)))
        #expect(body["id"] == "req-7")
        #expect(body["outputs"] == [["name": "predict"]])
    }

    // MARK: Messages from real clients

    @Test func readsTritonclientRawFP32() throws {
        let message = try GRPCOIPCodec.decodeInferRequest(try fixture("triton-raw-fp32.bin"))
        #expect(message.modelName == "churn")
        #expect(message.modelVersion == "2")
        #expect(GRPCOIPCodec.encoding(of: message) == .raw)
        let request = try GRPCOIPCodec.oipRequest(message)
        #expect(request.id == "req-7")
        #expect(request.outputNames == ["predict"])
        #expect(request.inputs.count == 1)
        #expect(request.inputs[0].name == "input-0")
        #expect(request.inputs[0].datatype == .fp32)
        #expect(request.inputs[0].shape == [2, 4])
        #expect(request.inputs[0].values == [1.5, 2, 3, 4, 5, 6, 7, -8.25])
        let matrix = try OIPCodec.decodeInstances(request, featureNames: nil, featureCount: 4)
        #expect(matrix.rows == 2)
    }

    @Test func readsTritonclientRawOfEachDtype() throws {
        let message = try GRPCOIPCodec.decodeInferRequest(try fixture("triton-raw-mixed.bin"))
        #expect(message.inputs.map(\.name) == ["i8", "u16", "i64", "f64", "b", "s"])
        // BYTES (raw: length-prefixed) is refused with the JSON codec's message; the rest read.
        #expect(
            errorDetail { _ = try GRPCOIPCodec.oipRequest(message) }
                == "input 's': datatype BYTES is not supported; expected a numeric datatype such as FP64"
        )
        var numeric = message
        numeric.inputs.removeLast()
        numeric.rawInputContents.removeLast()
        let inputs = try GRPCOIPCodec.oipRequest(numeric).inputs
        #expect(inputs.map(\.datatype) == [.int8, .uint16, .int64, .fp64, .bool])
        #expect(inputs.map(\.values) == [[-128, 127], [0, 65_535], [-0x1p40, 0x1p40], [0.1, -2.5], [1, 0, 1]])
        #expect(inputs[2].shape == [1, 2])
    }

    @Test func rendersRawBYTESAsStrings() throws {
        // A response carrying tritonclient's raw BYTES element framing.
        let request = try GRPCOIPCodec.decodeInferRequest(try fixture("triton-raw-mixed.bin"))
        var response = Inference_ModelInferResponse()
        var output = Inference_ModelInferResponse.InferOutputTensor()
        output.name = "s"
        output.datatype = "BYTES"
        output.shape = [2]
        response.outputs = [output]
        response.rawOutputContents = [request.rawInputContents[5]]
        #expect(try GRPCOIPCodec.restRendering(of: response)["outputs"]?[0]?["data"] == ["ab", ""])
    }

    @Test func readsTypedContents() throws {
        let message = try GRPCOIPCodec.decodeInferRequest(try fixture("v2-typed.bin"))
        #expect(GRPCOIPCodec.encoding(of: message) == .typed)
        let request = try GRPCOIPCodec.oipRequest(message)
        #expect(request.id == "typed-1")
        #expect(request.inputs.map(\.datatype) == [.int64, .fp32, .bool])
        #expect(request.inputs.map(\.values) == [[1, -2, 3, 4], [0.25, -1.5], [1, 0]])
    }

    @Test func rendersServerResponses() throws {
        let raw = try GRPCOIPCodec.decodeInferResponse(try fixture("v2-response-raw.bin"))
        #expect(
            try GRPCOIPCodec.restRendering(of: raw) == [
                "model_name": "churn", "model_version": "2", "id": "req-7",
                "outputs": [["name": "predict", "datatype": "FP32", "shape": [2], "data": [0.125, 0.75]]],
            ]
        )
        let typed = try GRPCOIPCodec.decodeInferResponse(try fixture("v2-response-typed.bin"))
        #expect(try GRPCOIPCodec.outputTensors(typed)[0].tensor == NumericTensor(shape: [2, 1], values: [0.2, 0.9]))
        #expect(
            upstreamError { _ = try GRPCOIPCodec.decodeInferResponse([0xFF]) }?
                .hasPrefix("response message is not a valid inference.ModelInferResponse") == true
        )
    }

    @Test func modelMetadataCarriesTheRESTFacts() throws {
        let response = GRPCOIPCodec.modelMetadataResponse(
            name: "churn",
            versions: ["v1", "v2"],
            platform: "xgboost",
            inputs: [.init(name: "input-0", datatype: .fp64, shape: [-1, 4])],
            outputs: [.init(name: "predict", datatype: .fp64, shape: [-1])]
        )
        let decoded = try Inference_ModelMetadataResponse(serializedBytes: try bytes(response))
        #expect(decoded.name == "churn")
        #expect(decoded.versions == ["v1", "v2"])
        #expect(decoded.platform == "xgboost")
        #expect(decoded.inputs.map(\.shape) == [[-1, 4]])
        #expect(decoded.outputs.map(\.datatype) == ["FP64"])
    }
}

struct GRPCTFServingCodecTests {
    @Test func readsTensorContentFromAPythonClient() throws {
        let request = try GRPCTFServingCodec.decodePredictRequest(try fixture("tfs-predict-content.bin"))
        #expect(request.modelSpec.name == "churn")
        #expect(request.modelSpec.version.value == 3)
        #expect(GRPCTFServingCodec.encoding(of: request) == .raw)
        let tensors = try GRPCTFServingCodec.inputTensors(request)
        #expect(tensors.map(\.name) == ["instances"])
        #expect(tensors[0].datatype == .fp32)
        #expect(tensors[0].tensor == NumericTensor(shape: [2, 3], values: [1, 2, 3, 4.5, 5, -6]))
        #expect(
            try GRPCTFServingCodec.restRequestBody(request) == [
                "signature_name": "serving_default", "inputs": ["instances": [[1, 2, 3], [4.5, 5, -6]]],
            ]
        )
    }

    @Test func readsFloatValAndTheSingleInputWhateverItsName() throws {
        let request = try GRPCTFServingCodec.decodePredictRequest(try fixture("tfs-predict-float-val.bin"))
        #expect(request.modelSpec.versionLabel == "stable")
        #expect(GRPCTFServingCodec.encoding(of: request) == .typed)
        let matrix = try GRPCTFServingCodec.decodeInstances(
            request,
            featureNames: ["a", "b", "c", "d"],
            featureCount: 4
        )
        #expect(matrix.rows == 1)
        #expect(matrix.row(0) == [1, 2, 3.5, 4])
        #expect(
            errorDetail { _ = try GRPCTFServingCodec.decodeInstances(request, featureNames: nil, featureCount: 3) }
                == "instance 0: expected 3 features per instance, got 4"
        )
    }

    @Test(arguments: numericDatatypes, [GRPCTensorEncoding.typed, .raw])
    func everyNumericDtypeRoundTrips(_ datatype: OIPDatatype, _ encoding: GRPCTensorEncoding) throws {
        let tensor = OIPTensor(
            name: "x",
            datatype: datatype,
            tensor: NumericTensor(shape: [3, 2], values: sampleValues(datatype))
        )
        let response = try GRPCTFServingCodec.predictResponse(
            outputs: [tensor],
            modelSpec: GRPCTFServingCodec.modelSpec(name: "m", version: "1"),
            encoding: encoding
        )
        var request = Tensorflow_Serving_PredictRequest()
        request.inputs = response.outputs
        let decoded = try GRPCTFServingCodec.inputTensors(
            try GRPCTFServingCodec.decodePredictRequest(try bytes(request))
        )[0]
        #expect(GRPCTFServingCodec.encoding(of: request) == encoding)
        #expect(decoded.datatype == datatype)
        #expect(decoded.shape == [3, 2])
        #expect(sameValues(decoded.values, tensor.values), "\(decoded.values) != \(tensor.values)")
    }

    @Test(arguments: [GRPCTensorEncoding.typed, .raw])
    func anEmbeddedModelAnswersWithPredictions(_ encoding: GRPCTensorEncoding) throws {
        let spec = GRPCTFServingCodec.modelSpec(name: "churn", version: "blue")
        #expect(spec.versionLabel == "blue")
        let response = try GRPCTFServingCodec.predictResponse(
            predictions: [0.25, 0.75],
            modelSpec: spec,
            encoding: encoding
        )
        #expect(Array(response.outputs.keys) == ["predictions"])
        let output = try #require(response.outputs["predictions"])
        #expect(output.dtype == .dtDouble)
        #expect(output.tensorShape.dim.map(\.size) == [2])
        #expect(output.tensorContent.isEmpty == (encoding == .typed))
        #expect(output.doubleVal.isEmpty == (encoding == .raw))
        let rendered = try GRPCTFServingCodec.restRendering(of: response)
        #expect(rendered == (try JSONParser.parse(TFServingCodec.encodePredictions([0.25, 0.75]))))
        #expect(rendered.value(at: try JSONPointer("/predictions")) == [0.25, 0.75])
    }

    @Test func rendersSeveralOutputsAsRowsAndReadsTFServingsAnswer() throws {
        let response = try GRPCTFServingCodec.decodePredictResponse(try fixture("tfs-response-double-val.bin"))
        #expect(try GRPCTFServingCodec.restRendering(of: response) == ["predictions": [0.25, 0.5]])
        var two = response
        two.outputs["classes"] = try GRPCTFServingCodec.predictResponse(
            outputs: [OIPTensor(name: "c", datatype: .int64, tensor: NumericTensor(shape: [2], values: [1, 0]))],
            modelSpec: response.modelSpec,
            encoding: .typed
        ).outputs["c"]
        #expect(
            try GRPCTFServingCodec.restRendering(of: two) == [
                "predictions": [["classes": 1, "predictions": 0.25], ["classes": 0, "predictions": 0.5]]
            ]
        )
    }

    @Test(arguments: [GRPCTensorEncoding.typed, .raw])
    func aRESTAnswerBecomesThePredictResponse(_ encoding: GRPCTensorEncoding) throws {
        let spec = GRPCTFServingCodec.modelSpec(name: "churn", version: "4")
        let single = try GRPCTFServingCodec.predictResponse(
            fromREST: ["predictions": [[0.5], [0.25]]],
            modelSpec: spec,
            encoding: encoding
        )
        #expect(single.modelSpec.version.value == 4)
        #expect(try GRPCTFServingCodec.restRendering(of: single) == ["predictions": [[0.5], [0.25]]])
        let rows: JSON = ["predictions": [["a": 1, "b": true], ["a": 2, "b": false]]]
        let named = try GRPCTFServingCodec.predictResponse(fromREST: rows, modelSpec: spec, encoding: encoding)
        #expect(named.outputs["b"]?.dtype == .dtBool)
        #expect(try GRPCTFServingCodec.restRendering(of: named) == rows)
    }

    @Test func malformedTensorsAreReadableBadRequests() throws {
        var proto = Tensorflow_TensorProto()
        proto.dtype = .dtFloat
        var dim = Tensorflow_TensorShapeProto.Dim()
        dim.size = 3
        proto.tensorShape.dim = [dim]
        func detail(_ change: (inout Tensorflow_TensorProto) -> Void) -> String? {
            var copy = proto
            change(&copy)
            var request = Tensorflow_Serving_PredictRequest()
            request.inputs["x"] = copy
            return errorDetail { _ = try GRPCTFServingCodec.inputTensors(request) }
        }
        #expect(detail { $0.floatVal = [1, 2] } == "input 'x': shape [3] has 3 elements but float_val has 2")
        // One typed value fills the shape, as TensorFlow reads it.
        #expect(detail { $0.floatVal = [7] } == nil)
        #expect(
            detail { $0.tensorContent = Data(count: 10) }
                == "input 'x': shape [3] has 3 elements of 4 bytes (FP32), 12 bytes, but tensor_content has 10 bytes"
        )
        #expect(
            detail {
                $0.dtype = .dtString
                $0.stringVal = [Data("a".utf8)]
            } == "input 'x': dtype dtString is not supported; expected a numeric dtype such as DT_FLOAT or DT_DOUBLE"
        )
        #expect(
            errorDetail { _ = try GRPCTFServingCodec.inputTensors(Tensorflow_Serving_PredictRequest()) }
                == "request has no inputs; expected one tensor per input of the signature"
        )
        #expect(
            errorDetail { _ = try GRPCTFServingCodec.decodePredictRequest([0x12, 0x10, 0x0A]) }?
                .hasPrefix("request message is not a valid tensorflow.serving.PredictRequest") == true
        )
    }

    @Test func metadataHoldsTheRESTSignature() throws {
        let response = try GRPCTFServingCodec.getModelMetadataResponse(
            modelName: "churn",
            version: "2",
            featureCount: 4,
            outputDatatype: .int64
        )
        let decoded = try Tensorflow_Serving_GetModelMetadataResponse(serializedBytes: try bytes(response))
        #expect(decoded.modelSpec.name == "churn")
        #expect(decoded.modelSpec.version.value == 2)
        let any = try #require(decoded.metadata["signature_def"])
        #expect(any.typeURL == "type.googleapis.com/tensorflow.serving.SignatureDefMap")
        let map = try Tensorflow_Serving_SignatureDefMap(unpackingAny: any)
        let signature = try #require(map.signatureDef["serving_default"])
        #expect(signature.methodName == "tensorflow/serving/predict")
        #expect(signature.inputs["instances"]?.tensorShape.dim.map(\.size) == [-1, 4])
        #expect(signature.inputs["instances"]?.dtype == .dtDouble)
        #expect(signature.outputs["predictions"]?.dtype == .dtInt64)
    }
}

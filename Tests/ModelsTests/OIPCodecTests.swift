import Foundation
import Testing

@testable import Models

private let names = ["tenure_months", "monthly_charges", "support_calls", "contract_months"]

private func decode(
    _ text: String,
    featureNames: [String]? = names,
    featureCount: Int = 4
) throws(ModelError)
    -> FeatureMatrix
{
    let bytes = Array(text.utf8)
    let result = bytes.withUnsafeBytes { buffer in
        Result { () throws(ModelError) -> FeatureMatrix in
            try OIPCodec.decodeInstances(buffer, featureNames: featureNames, featureCount: featureCount)
        }
    }
    return try result.get()
}

private func decodeError(_ text: String, featureNames: [String]? = names, featureCount: Int = 4) -> String? {
    do {
        _ = try decode(text, featureNames: featureNames, featureCount: featureCount)
        return nil
    } catch {
        return error.detail
    }
}

private func rows(_ matrix: FeatureMatrix) -> [[Double?]] {
    (0..<matrix.rows).map { row in matrix.row(row).map { $0.isNaN ? nil : $0 } }
}

private func body(_ datatype: String, _ shape: String, _ data: String, name: String = "x") -> String {
    #"{"inputs": [{"name": "\#(name)", "shape": \#(shape), "datatype": "\#(datatype)", "data": \#(data)}]}"#
}

struct OIPCodecTests {
    @Test(arguments: [
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
    ])
    func acceptsEveryNumericDatatype(_ datatype: String) throws {
        let data = datatype == "BOOL" ? "[true, false, true, true]" : "[1, 0, 1, 1]"
        #expect(rows(try decode(body(datatype, "[1, 4]", data))) == [[1, 0, 1, 1]])
    }

    @Test(
        arguments: [
            (body("FP64", "[2, 4]", "[1, 2, 3, 4, 5, 6.5, null, -1]"), [[1, 2, 3, 4], [5, 6.5, nil, -1]]),
            (body("FP32", "[2, 4]", "[[1, 2, 3, 4], [5, 6.5, null, -1]]"), [[1, 2, 3, 4], [5, 6.5, nil, -1]]),
            (body("FP64", "[2, 4]", "[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]"), [[1, 2, 3, 4], [5, 6, 7, 8]]),
            (body("INT64", "[4]", "[1, 2, 3, 4]"), [[1, 2, 3, 4]]),
            (
                #"{"id": "r1", "parameters": {"binary_data_output": true, "x": [1]},"#
                    + #" "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4],"#
                    + #" "parameters": {"binary_data": false}}], "outputs": [{"name": "predict", "parameters": {"binary_data": true}}]}"#,
                [[1, 2, 3, 4]]
            ),
            (
                #"{"inputs": [{"name": "support_calls", "shape": [2], "datatype": "INT32", "data": [5, 6]},"#
                    + #" {"name": "tenure_months", "shape": [2, 1], "datatype": "FP64", "data": [[1], [null]]}]}"#,
                [[1, nil, 5, nil], [nil, nil, 6, nil]]
            ),
        ] as [(String, [[Double?]])]
    )
    func decodesFlatNestedAndColumnarData(_ text: String, _ expected: [[Double?]]) throws {
        #expect(rows(try decode(text)) == expected)
    }

    @Test func singleFeatureModelsTakeShapeN() throws {
        #expect(
            rows(try decode(body("FP64", "[3]", "[0.5, null, 2]"), featureNames: nil, featureCount: 1)) == [
                [0.5], [nil], [2],
            ]
        )
    }

    @Test(arguments: [
        (
            body("FP64", "[1, 3]", "[1, 2, 3]"),
            "input 'x': expected 4 features per instance, got 3 (shape [1, 3]; expected [N, 4])"
        ),
        (
            body("FP64", "[3]", "[1, 2, 3]"),
            "input 'x': expected 4 features per instance, got 3 (shape [3]; expected [N, 4] or [4])"
        ),
        (body("FP64", "[2, 4]", "[1, 2, 3, 4, 5, 6, 7]"), "input 'x': shape [2, 4] has 8 elements but data has 7"),
        (body("FP64", "[1, 4]", "[1, 2, 3, 4, 5]"), "input 'x': shape [1, 4] has 4 elements but data has 5"),
        (body("FP64", "[1, 2, 2]", "[1, 2, 3, 4]"), "input 'x': shape [1, 2, 2] has 3 dimensions; expected [N, 4]"),
        (body("FP64", "[0, 4]", "[]"), "input 'x' has no instances; expected N ≥ 1"),
        (
            body("BYTES", "[1, 4]", #"["a", "b", "c", "d"]"#),
            "input 'x': datatype BYTES is not supported; expected a numeric datatype such as FP64"
        ),
        (
            body("FP128", "[1, 4]", "[1, 2, 3, 4]"),
            "input 'x': unknown datatype 'FP128'; expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64"
        ),
        (
            body("INT32", "[1, 4]", "[1, 2.5, 3, 4]"),
            "input 'x': element 1 is 2.5; expected a whole number in the INT32 range"
        ),
        (
            body("UINT8", "[1, 4]", "[1, 2, 256, 4]"),
            "input 'x': element 2 is 256; expected a whole number in the UINT8 range"
        ),
        (
            body("UINT32", "[1, 4]", "[1, -1, 3, 4]"),
            "input 'x': element 1 is -1; expected a whole number in the UINT32 range"
        ),
        (
            body("INT64", "[1, 4]", "[1, 2, null, 4]"),
            "input 'x': element 2 is null; only FP16, FP32 and FP64 data may hold null (missing)"
        ),
        (body("BOOL", "[1, 4]", "[true, 2, true, true]"), "input 'x': element 1 is 2; expected true or false for BOOL"),
        (body("FP64", "[1, 4]", "[true, 2, 3, 4]"), "input 'x': element 0 is a boolean; expected a number for FP64"),
        (body("FP32", "[1, 4]", #"[1, "2", 3, 4]"#), "input 'x': element 1 is a string; expected a number for FP32"),
        (body("FP16", "[1, 4]", "[1, 70000, 3, 4]"), "input 'x': element 1 is 70000, outside the FP16 range"),
        (body("FP32", "[1, 4]", "[1, 1e39, 3, 4]"), "input 'x': element 1 is 1e+39, outside the FP32 range"),
        (body("FP64", "[1, -4]", "[1, 2, 3, 4]"), "input 'x': shape entry -4 is not a non-negative integer"),
        (body("FP64", "[1, 4]", "5"), "input 'x': data must be a list, got a number"),
        (#"{"inputs": []}"#, "'inputs' is empty; expected at least one tensor"),
        (
            #"{"instances": [[1, 2, 3, 4]]}"#,
            "unexpected key 'instances' in request body; expected \"inputs\" (and optionally \"id\", \"parameters\", \"outputs\")"
        ),
        (#"{"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}"#, "inputs[0] has no string \"name\""),
        (
            #"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4], "dtype": 1}]}"#,
            "inputs[0]: unexpected key 'dtype'; expected name, shape, datatype, data, parameters"
        ),
        (#"{"id": 7, "inputs": []}"#, "'id' must be a string, got a number"),
        (
            #"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, NaN, 3, 4]}]}"#,
            "request body is not JSON: unexpected character 'N' (NaN and Infinity are not JSON) at byte 75; expected a value"
        ),
        (
            #"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}, {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}]}"#,
            "unknown input 'a'; expected one input of shape [N, 4] or one input per feature named tenure_months, monthly_charges, support_calls, contract_months"
        ),
        (
            #"{"inputs": [{"name": "tenure_months", "shape": [2], "datatype": "FP64", "data": [1, 2]}, {"name": "support_calls", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}"#,
            "input 'support_calls': shape [3]; expected [2] or [2, 1], like input 'tenure_months'"
        ),
    ])
    func refusesWhatDoesNotFit(_ text: String, _ message: String) {
        #expect(decodeError(text) == message)
    }

    @Test func severalInputsWithoutFeatureNamesAreRefused() {
        let text =
            #"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}, {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}]}"#
        #expect(
            decodeError(text, featureNames: nil, featureCount: 2)
                == "request has 2 inputs; this model takes one input of shape [N, 2]"
        )
    }

    @Test func encodesResponses() throws {
        let scalar = try OIPCodec.encodeResponse(
            [0.25, 0.5],
            datatype: .fp64,
            modelName: "churn",
            modelVersion: "v3",
            id: "r1"
        )
        #expect(
            String(decoding: scalar, as: UTF8.self)
                == #"{"model_name":"churn","model_version":"v3","id":"r1","outputs":[{"name":"predict","datatype":"FP64","shape":[2],"data":[0.25,0.5]}]}"#
        )
        let probabilities: [JSON] = [[0.1, 0.9], [.number(Double(Float(0.3))), .number(Double(Float(0.7)))]]
        let vector = try OIPCodec.encodeResponse(probabilities, datatype: .fp32, modelName: "iris", modelVersion: "1")
        #expect(
            String(decoding: vector, as: UTF8.self)
                == #"{"model_name":"iris","model_version":"1","outputs":[{"name":"predict","datatype":"FP32","shape":[2,2],"data":[0.1,0.9,0.3,0.7]}]}"#
        )
        let classes = try OIPCodec.encodeResponse([2, 0], datatype: .int64, modelName: "iris", modelVersion: "1")
        #expect(String(decoding: classes, as: UTF8.self).hasSuffix(#""datatype":"INT64","shape":[2],"data":[2,0]}]}"#))
        #expect(throws: ModelError.self) {
            try OIPCodec.encodeResponse([[1, 2], 3], modelName: "m", modelVersion: "1")
        }
    }

    @Test func embeddedModelRoundTrip() throws {
        // A v2 request for the churn XGBoost model, answered and read back as a tensor.
        guard
            case .embedded(let model) = try ModelLoader.load(
                kind: "xgboost",
                path: "\(examplesDirectory)/churn-xgb-v3.json"
            )
        else { throw ModelLoadError(path: "churn-xgb-v3.json", message: "not embedded") }
        let rows = try decode(body("FP32", "[2, 4]", "[[12, 73.36, 2, 1], [72, 20, 0, 24]]"))
        let predictions = try model.predict(rows)
        let response = try OIPCodec.encodeResponse(
            predictions,
            datatype: model.outputDatatype,
            modelName: "churn",
            modelVersion: "v3"
        )
        let tensor = try ProtocolTranslation.outputTensor(JSONParser.parse(response))
        #expect(tensor.shape == [2])
        #expect(zip(tensor.values, predictions.map { $0.doubleValue! }).allSatisfy { Float($0) == Float($1) })
    }

    @Test func mutatedBodiesNeverCrashTheDecoder() throws {
        // Seeded mutations of valid bodies: each decodes or is a 400, never a trap.
        let seeds = [
            body("FP64", "[2, 4]", "[[1, 2, 3, 4], [5, 6.5, null, -1]]"),
            body("INT64", "[1, 4]", "[1, 2, 3, 4]"),
            body("BOOL", "[4]", "[true, false, true, true]"),
            #"{"id": "a", "parameters": {"p": 1}, "inputs": [{"name": "support_calls", "shape": [1], "datatype": "UINT8", "data": [3]}], "outputs": [{"name": "predict"}]}"#,
        ]
        let alphabet = Array(#"{}[]",:0123456789-.eE nulltrueFP64INT8BYTES"shape""data"#.utf8)
        var rng = SplitMix64(seed: 0x0000_0E1F_2025)
        var accepted = 0
        var refused = 0
        for _ in 0..<4000 {
            var bytes = Array(seeds.randomElement(using: &rng)!.utf8)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let position = Int.random(in: 0..<bytes.count, using: &rng)
                switch rng.next() % 4 {
                case 0: bytes[position] = alphabet.randomElement(using: &rng)!
                case 1: bytes.insert(alphabet.randomElement(using: &rng)!, at: position)
                case 2 where bytes.count > 1: bytes.remove(at: position)
                default:
                    let end = min(bytes.count, position + Int.random(in: 1...12, using: &rng))
                    bytes.insert(
                        contentsOf: Array(bytes[position..<end]),
                        at: Int.random(in: 0...bytes.count, using: &rng)
                    )
                }
            }
            for (featureNames, featureCount) in [(Optional(names), 4), (nil, 1)] {
                let result = bytes.withUnsafeBytes { buffer in
                    Result { () throws(ModelError) -> FeatureMatrix in
                        try OIPCodec.decodeInstances(buffer, featureNames: featureNames, featureCount: featureCount)
                    }
                }
                switch result {
                case .success(let matrix):
                    #expect(matrix.columns == featureCount && matrix.rows >= 1)
                    accepted += 1
                case .failure(let error):
                    #expect(error.code == .badRequest && !error.detail.isEmpty)
                    refused += 1
                }
            }
        }
        #expect(accepted > 0 && refused > 0)
    }
    /// Data mixing flat elements and nested lists reads in row-major order, and a bad element in
    /// the nested part is reported by its place in that order.
    @Test func mixedFlatAndNestedData() throws {
        #expect(rows(try decode(body("FP64", "[1, 4]", "[1, [2, [3]], 4]"))) == [[1, 2, 3, 4]])
        #expect(
            decodeError(body("INT32", "[1, 4]", "[1, [2, 3.5], 4]"))
                == "input 'x': element 2 is 3.5; expected a whole number in the INT32 range"
        )
        #expect(
            decodeError(body("FP64", "[1, 4]", #"[1, 2, [3, "4"]]"#))
                == "input 'x': element 3 is a string; expected a number for FP64"
        )
    }

    /// Responses written through the fast paths (names without escapes, integral shapes, one
    /// number per row) read back as the same tensor; a name that needs escaping is escaped.
    @Test func encodedResponsesReadBack() throws {
        let bytes = try OIPCodec.encodeResponse(
            [.number(0.25), .number(1), .number(-3)],
            modelName: "churn \"q\"\n",
            modelVersion: "v3",
            id: "r-1"
        )
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(
            text == #"{"model_name":"churn \"q\"\n","model_version":"v3","id":"r-1","outputs":"#
                + #"[{"name":"predict","datatype":"FP64","shape":[3],"data":[0.25,1,-3]}]}"#
        )
        let nested = try OIPCodec.encodeResponse(
            [.array([.number(1), .number(2)]), .array([.number(30), .number(400)])],
            modelName: "m",
            modelVersion: "1"
        )
        #expect(
            String(decoding: nested, as: UTF8.self)
                == #"{"model_name":"m","model_version":"1","outputs":[{"name":"predict","datatype":"FP64","shape":[2,2],"data":[1,2,30,400]}]}"#
        )
    }
}

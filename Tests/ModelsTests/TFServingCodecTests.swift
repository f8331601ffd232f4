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
            try TFServingCodec.decodeInstances(buffer, featureNames: featureNames, featureCount: featureCount)
        }
    }
    return try result.get()
}

/// The matrix as rows, with NaN shown as nil so that rows compare.
private func rows(_ matrix: FeatureMatrix) -> [[Double?]] {
    (0..<matrix.rows).map { row in matrix.row(row).map { $0.isNaN ? nil : $0 } }
}

private func decodeError(_ text: String, featureNames: [String]? = names, featureCount: Int = 4) -> ModelError? {
    do {
        _ = try decode(text, featureNames: featureNames, featureCount: featureCount)
        return nil
    } catch {
        return error
    }
}

struct TFServingCodecTests {
    @Test(
        arguments: [
            (#"{"instances": [[1, 2, 3, 4]]}"#, [[1, 2, 3, 4]]),
            (#"{"instances": [[1, 2, 3, 4], [5, 6.5, null, -1]]}"#, [[1, 2, 3, 4], [5, 6.5, nil, -1]]),
            (#"{"instances": [[true, false, 0, 1e2]]}"#, [[1, 0, 0, 100]]),
            (#"{"signature_name": "serving_default", "instances": [[1, 2, 3, 4]]}"#, [[1, 2, 3, 4]]),
            (
                #"{"instances": [{"tenure_months": 3, "monthly_charges": 70.5, "support_calls": 1, "contract_months": 12}]}"#,
                [[3, 70.5, 1, 12]]
            ),
            (
                #"{"instances": [{"contract_months": 1, "tenure_months": 2}, {}]}"#,
                [[2, nil, nil, 1], [nil, nil, nil, nil]]
            ),
            (#"{"instances": [{"support_calls": null}]}"#, [[nil, nil, nil, nil]]),
            (#"{"inputs": [[1, 2, 3, 4], [5, 6, 7, 8]]}"#, [[1, 2, 3, 4], [5, 6, 7, 8]]),
            (
                #"{"inputs": {"tenure_months": [1, 2], "monthly_charges": [3, 4], "support_calls": [5, 6], "contract_months": [7, 8]}}"#,
                [[1, 3, 5, 7], [2, 4, 6, 8]]
            ),
            (#"{"inputs": {"support_calls": [[5], [null]]}}"#, [[nil, nil, 5, nil], [nil, nil, nil, nil]]),
        ] as [(String, [[Double?]])]
    )
    func acceptsEveryShape(_ body: String, _ expected: [[Double?]]) throws {
        let matrix = try decode(body)
        #expect(matrix.columns == 4)
        #expect(rows(matrix) == expected)
    }

    @Test func singleFeatureModelsTakeBareValues() throws {
        #expect(
            rows(try decode(#"{"instances": [0.5, null, true]}"#, featureNames: ["x"], featureCount: 1)) == [
                [0.5], [nil], [1],
            ]
        )
        #expect(rows(try decode(#"{"instances": [[0.5], [2]]}"#, featureNames: nil, featureCount: 1)) == [[0.5], [2]])
        #expect(rows(try decode(#"{"inputs": [7, 8]}"#, featureNames: nil, featureCount: 1)) == [[7], [8]])
    }

    @Test(arguments: [
        ("[1, 2]", #"request body must be a JSON object with "instances" or "inputs", got an array"#),
        ("{}", #"request body has neither "instances" nor "inputs"; expected {"instances": [[f1, f2, f3, f4], ...]}"#),
        (
            #"{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}"#,
            #"request body has both "instances" and "inputs"; send only one"#
        ),
        (
            #"{"instances": [[1,2,3,4]], "model": "x"}"#,
            #"unexpected key 'model' in request body; expected "instances" or "inputs" (and optionally "signature_name")"#
        ),
        (#"{"instances": [[1,2,3,4]], "signature_name": 1}"#, "'signature_name' must be a string, got a number"),
        (
            #"{"instances": {"a": 1}}"#,
            "'instances' must be a list of instances such as [[f1, f2, f3, f4], ...], got an object"
        ),
        (#"{"instances": []}"#, "'instances' is empty; expected at least one instance such as [[f1, f2, f3, f4], ...]"),
        (
            #"{"instances": [1, 2, 3, 4]}"#,
            "'instances' is a flat list of 4 values, but this model takes 4 features per instance; expected a list of instances such as [[f1, f2, f3, f4], ...]"
        ),
        (#"{"instances": [[1, 2, 3]]}"#, "instance 0: expected 4 features per instance, got 3"),
        (
            #"{"instances": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4, 5]]}"#,
            "instance 2: expected 4 features per instance, got 5"
        ),
        (
            #"{"instances": [[1, "2", 3, 4]]}"#,
            "instance 0: feature 'monthly_charges' is a string; expected a number or null"
        ),
        (
            #"{"instances": [[1, [2], 3, 4]]}"#,
            "instance 0: feature 'monthly_charges' is an array; expected a number or null"
        ),
        (
            #"{"instances": [{"tenure": 3}]}"#,
            "instance 0: unknown feature 'tenure'; expected one of tenure_months, monthly_charges, support_calls, contract_months"
        ),
        (
            #"{"instances": [{"tenure_months": {}}]}"#,
            "instance 0: feature 'tenure_months' is an object; expected a number or null"
        ),
        (
            #"{"instances": [[1, 2, 3, 4], {"tenure_months": 1}]}"#,
            "instance 1 is an object; expected a list of 4 features, like instance 0"
        ),
        (
            #"{"instances": [{"tenure_months": 1}, [1, 2, 3, 4]]}"#,
            "instance 1 is an array; expected an object keyed by feature name, like instance 0"
        ),
        (
            #"{"instances": ["a"]}"#,
            "instance 0 is a string; expected a list of 4 numbers or an object keyed by feature name"
        ),
        (#"{"inputs": 3}"#, "'inputs' must be a list of instances such as [[f1, f2, f3, f4], ...], got a number"),
        (#"{"inputs": {}}"#, "'inputs' has no feature inputs; expected one list of values per feature"),
        (
            #"{"inputs": {"tenure_months": [1, 2], "support_calls": [1]}}"#,
            "input 'support_calls' has 1 values but input 'tenure_months' has 2; every input needs one value per instance"
        ),
        (
            #"{"inputs": {"tenure_months": 1}}"#,
            "input 'tenure_months' is a number; expected a list with one value per instance"
        ),
        (#"{"inputs": {"tenure_months": []}}"#, "input 'tenure_months' is empty; expected one value per instance"),
        (
            #"{"inputs": {"age": [1]}}"#,
            "unknown input 'age'; expected one of tenure_months, monthly_charges, support_calls, contract_months"
        ),
        (
            #"{"inputs": {"tenure_months": ["x"]}}"#,
            "instance 0: feature 'tenure_months' is a string; expected a number or null"
        ),
        ("{\"instances\": x}", "request body is not JSON: unexpected character 'x' at byte 14; expected a value"),
        ("", "request body is not JSON: empty input at byte 0; expected a JSON value"),
    ])
    func refusesWithA400NamingTheExpectedShape(_ body: String, _ detail: String) {
        let error = decodeError(body)
        #expect(error?.detail == detail)
        #expect(error?.status == 400)
        #expect(error?.code == .badRequest)
    }

    @Test func modelsWithoutNamesRefuseObjects() {
        #expect(
            decodeError(#"{"instances": [{"a": 1}]}"#, featureNames: nil)?.detail
                == "instance 0 is an object, but this model has no feature names; expected a list of 4 numbers per instance"
        )
        #expect(
            decodeError(#"{"inputs": {"a": [1]}}"#, featureNames: nil)?.detail
                == #"named "inputs" need a model with feature names; this model takes {"inputs": [[f1, f2, f3, f4], ...]}"#
        )
        #expect(
            decodeError(#"{"instances": ["a"]}"#, featureNames: nil)?.detail
                == "instance 0 is a string; expected a list of 4 numbers"
        )
        #expect(
            decodeError(#"{"instances": [1, "a"]}"#, featureNames: nil, featureCount: 1)?.detail
                == "instance 1 is a string; expected a number or null, like instance 0"
        )
    }

    @Test func ignoresNamedExtraKeysOnly() throws {
        let body = try JSONParser.parse(
            #"{"instances": [{"customer_id": 1001, "tenure_months": 3}], "signature_name": "x"}"#
        )
        let matrix = try TFServingCodec.decodeInstances(
            body,
            featureNames: names,
            featureCount: 4,
            ignoring: ["customer_id"]
        )
        #expect(rows(matrix) == [[3, nil, nil, nil]])
        #expect(
            throws: ModelError.badRequest(
                "instance 0: unknown feature 'customer_id'; expected one of tenure_months, monthly_charges, support_calls, contract_months"
            )
        ) {
            try TFServingCodec.decodeInstances(body, featureNames: names, featureCount: 4)
        }
        let columns = try JSONParser.parse(#"{"inputs": {"customer_id": [1001], "support_calls": [2]}}"#)
        #expect(
            rows(
                try TFServingCodec.decodeInstances(
                    columns,
                    featureNames: names,
                    featureCount: 4,
                    ignoring: ["customer_id"]
                )
            ) == [[nil, nil, 2, nil]]
        )
    }

    @Test func encodesPredictionsAndErrors() {
        #expect(
            String(decoding: TFServingCodec.encodePredictions([0.25, 1, [0.5, 0.5], .null]), as: UTF8.self)
                == #"{"predictions":[0.25,1,[0.5,0.5],null]}"#
        )
        #expect(String(decoding: TFServingCodec.encodePredictions([]), as: UTF8.self) == #"{"predictions":[]}"#)
        #expect(String(decoding: TFServingCodec.errorBody("bad \"x\"\n"), as: UTF8.self) == #"{"error":"bad \"x\"\n"}"#)
        #expect(TFServingCodec.decodePredictions(["predictions": [1, 2]]) == [1, 2])
        #expect(TFServingCodec.decodePredictions(["outputs": [1, 2]]) == nil)
    }

    @Test func modelErrorsCarryStatusAndCode() {
        #expect(ModelError.badRequest("x").status == 400)
        #expect(ModelError.noPrediction("x").status == 404)
        #expect(ModelError.modelError("x").status == 500)
        #expect(ModelError.noPrediction("x").code.rawValue == "no_prediction")
        #expect(ModelError.modelError("boom").description == "model_error: boom")
    }
    /// Instance objects list features in any order: a name is found whether or not it follows
    /// the previous one in the model's order, in narrow models (found by comparing names) and
    /// in wide ones (found through an index).
    @Test(arguments: [4, 40])
    func instanceObjectsInAnyOrder(width: Int) throws {
        let featureNames = width == 4 ? names : (0..<width).map { "feature_\($0)" }
        // Every feature, its value its column; in reverse order, then in model order with one
        // feature moved to the front.
        let reversed = featureNames.indices.reversed().map { #""\#(featureNames[$0])": \#($0)"# }
        var shifted = featureNames.indices.map { #""\#(featureNames[$0])": \#($0)"# }
        shifted.insert(shifted.removeLast(), at: 0)
        for members in [reversed, shifted] {
            let body = #"{"instances": [{"# + members.joined(separator: ", ") + "}]}"
            let matrix = try decode(body, featureNames: featureNames, featureCount: width)
            #expect(rows(matrix) == [featureNames.indices.map { Double($0) }])
            let columnar =
                #"{"inputs": {"#
                + members.map { $0.replacingOccurrences(of: ": ", with: ": [") + "]" }
                .joined(separator: ", ") + "}}"
            #expect(rows(try decode(columnar, featureNames: featureNames, featureCount: width)) == rows(matrix))
        }
        let unknown = #"{"instances": [{"\#(featureNames[1])": 1, "nope": 2}]}"#
        #expect(
            decodeError(unknown, featureNames: featureNames, featureCount: width)?.detail.hasPrefix(
                "instance 0: unknown feature 'nope'; expected one of \(featureNames[0]), \(featureNames[1])"
            ) == true
        )
    }
}

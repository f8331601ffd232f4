import Testing

@testable import Models

private func json(_ text: String) -> JSON { try! JSONParser.parse(text) }

struct ProtocolTranslationTests {
    @Test(arguments: [
        (
            #"{"instances": [[1, 2, 3], [4, 5, null]]}"#,
            #"{"inputs":[{"name":"input-0","datatype":"FP64","shape":[2,3],"data":[1,2,3,4,5,null]}]}"#
        ),
        (#"{"instances": [0.5, 1]}"#, #"{"inputs":[{"name":"input-0","datatype":"FP64","shape":[2],"data":[0.5,1]}]}"#),
        (
            #"{"signature_name": "s", "inputs": [[true, false]]}"#,
            #"{"inputs":[{"name":"input-0","datatype":"BOOL","shape":[1,2],"data":[true,false]}]}"#
        ),
        (
            #"{"instances": [{"a": 1, "b": [1, 2]}, {"b": [3, 4], "a": 2}]}"#,
            #"{"inputs":[{"name":"a","datatype":"FP64","shape":[2],"data":[1,2]},{"name":"b","datatype":"FP64","shape":[2,2],"data":[1,2,3,4]}]}"#
        ),
        (
            #"{"inputs": {"a": [1, 2], "b": [[1], [2]]}}"#,
            #"{"inputs":[{"name":"a","datatype":"FP64","shape":[2],"data":[1,2]},{"name":"b","datatype":"FP64","shape":[2,1],"data":[1,2]}]}"#
        ),
    ])
    func tfServingRequestsBecomeV2(_ tfServing: String, _ v2: String) throws {
        #expect(try ProtocolTranslation.v2Request(fromTFServing: json(tfServing)) == json(v2))
    }

    @Test(arguments: [
        (
            #"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, null]}]}"#,
            #"{"instances": [[1, 2, 3], [4, 5, null]]}"#
        ),
        (
            #"{"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [[7], [8]]}]}"#,
            #"{"instances": [7, 8]}"#
        ),
        (
            #"{"inputs": [{"name": "x", "shape": [1, 2, 2], "datatype": "BOOL", "data": [true, false, false, true]}]}"#,
            #"{"instances": [[[true, false], [false, true]]]}"#
        ),
        (
            #"{"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]}, {"name": "b", "shape": [2, 1], "datatype": "FP64", "data": [3, 4]}]}"#,
            #"{"inputs": {"a": [1, 2], "b": [[3], [4]]}}"#
        ),
    ])
    func v2RequestsBecomeTFServing(_ v2: String, _ tfServing: String) throws {
        #expect(try ProtocolTranslation.tfServingRequest(fromV2: json(v2)) == json(tfServing))
    }

    @Test(arguments: [
        #"{"instances": [[1, 2, 3], [4, 5, 6]]}"#, #"{"instances": [0.5, 1]}"#, #"{"instances": [[[1, 2]], [[3, 4]]]}"#,
    ])
    func requestsRoundTrip(_ tfServing: String) throws {
        let v2 = try ProtocolTranslation.v2Request(fromTFServing: json(tfServing))
        #expect(try ProtocolTranslation.tfServingRequest(fromV2: v2) == json(tfServing))
    }

    @Test(arguments: [
        (
            #"{"instances": [[1, 2], [3]]}"#,
            "'input-0': list at [1] has 1 entries; expected 2, like the first (the tensor must be rectangular); only numeric tensors can be translated"
        ),
        (
            #"{"instances": [["a", "b"]]}"#,
            "'input-0': value at [0][0] is a string; expected a number; only numeric tensors can be translated"
        ),
        (#"{"instances": [{"a": 1}, {"b": 2}]}"#, "instance 1 does not have the same named inputs as instance 0 (a)"),
        (#"{"instances": []}"#, "'instances' must be a non-empty list of instances, got []"),
        (
            #"{"inputs": {"a": [1, 2], "b": [1]}}"#,
            "input 'b' has 1 instances but input 'a' has 2; every input needs one entry per instance"
        ),
        (
            #"{"rows": []}"#,
            #"unexpected key 'rows' in request body; expected "instances" or "inputs" (and optionally "signature_name")"#
        ),
        (#"{"instances": [[1]], "signature_name": 1}"#, "'signature_name' must be a string, got a number"),
        (#"{}"#, #"request body has neither "instances" nor "inputs""#),
    ])
    func untranslatableRequestsAre400s(_ tfServing: String, _ message: String) {
        #expect(throws: ModelError.badRequest(message)) {
            try ProtocolTranslation.v2Request(fromTFServing: json(tfServing))
        }
    }

    @Test func v2RequestErrorsAre400s() {
        #expect(
            throws: ModelError.badRequest(
                "input 'x': datatype BYTES is not supported; expected a numeric datatype such as FP64"
            )
        ) {
            try ProtocolTranslation.tfServingRequest(
                fromV2: json(#"{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}"#)
            )
        }
        #expect(throws: ModelError.badRequest("input 'x' is a scalar (shape []); TF Serving needs a batch dimension")) {
            try ProtocolTranslation.tfServingRequest(
                fromV2: json(#"{"inputs": [{"name": "x", "shape": [], "datatype": "FP64", "data": [1]}]}"#)
            )
        }
    }

    @Test(arguments: [
        (
            #"{"model_name": "m", "model_version": "1", "outputs": [{"name": "predict", "shape": [2], "datatype": "FP32", "data": [0.25, 0.5]}]}"#,
            #"{"predictions": [0.25, 0.5]}"#
        ),
        (
            #"{"model_name": "m", "outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP64", "data": [0.1, 0.9, 0.6, 0.4]}]}"#,
            #"{"predictions": [[0.1, 0.9], [0.6, 0.4]]}"#
        ),
        (
            #"{"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]}, {"name": "p", "shape": [2, 1], "datatype": "FP64", "data": [0.9, 0.2]}]}"#,
            #"{"predictions": [{"label": 1, "p": [0.9]}, {"label": 0, "p": [0.2]}]}"#
        ),
    ])
    func v2ResponsesBecomeTFServing(_ v2: String, _ tfServing: String) throws {
        #expect(try ProtocolTranslation.tfServingResponse(fromV2: json(v2)) == json(tfServing))
    }

    @Test func tfServingResponsesBecomeV2() throws {
        #expect(
            try ProtocolTranslation.v2Response(
                fromTFServing: json(#"{"predictions": [[0.1, 0.9], [0.6, 0.4]]}"#),
                modelName: "m",
                modelVersion: "v1",
                id: "r"
            )
                == json(
                    #"{"model_name": "m", "model_version": "v1", "id": "r", "outputs": [{"name": "predict", "datatype": "FP64", "shape": [2, 2], "data": [0.1, 0.9, 0.6, 0.4]}]}"#
                )
        )
        #expect(
            try ProtocolTranslation.v2Response(
                fromTFServing: json(#"{"predictions": [{"label": 1, "p": 0.9}, {"label": 0, "p": 0.2}]}"#),
                modelName: "m",
                modelVersion: "v1"
            )
                == json(
                    #"{"model_name": "m", "model_version": "v1", "outputs": [{"name": "label", "datatype": "FP64", "shape": [2], "data": [1, 0]}, {"name": "p", "datatype": "FP64", "shape": [2], "data": [0.9, 0.2]}]}"#
                )
        )
    }

    @Test(
        arguments: [
            (#"{"predictions": [0.5, 0.25]}"#, nil, NumericTensor(shape: [2], values: [0.5, 0.25])),
            (#"{"predictions": [[0.5], [0.25]]}"#, nil, NumericTensor(shape: [2, 1], values: [0.5, 0.25])),
            (#"{"predictions": [{"a": 1, "b": 2}]}"#, "b", NumericTensor(shape: [1], values: [2])),
            (#"{"outputs": [[1, 2]]}"#, nil, NumericTensor(shape: [1, 2], values: [1, 2])),
            (#"{"outputs": {"a": [1], "b": [true]}}"#, "b", NumericTensor(shape: [1], values: [1])),
            (
                #"{"model_name": "m", "outputs": [{"name": "predict", "shape": [1, 3], "datatype": "FP32", "data": [[0.2, 0.3, 0.5]]}]}"#,
                nil,
                NumericTensor(shape: [1, 3], values: [0.2, 0.3, 0.5])
            ),
            (
                #"{"outputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}, {"name": "b", "shape": [1], "datatype": "INT8", "data": [2]}]}"#,
                "b", NumericTensor(shape: [1], values: [2])
            ),
        ] as [(String, String?, NumericTensor)]
    )
    func responsesNormalizeToTensors(_ body: String, _ name: String?, _ expected: NumericTensor) throws {
        #expect(try ProtocolTranslation.outputTensor(json(body), outputName: name) == expected)
    }

    @Test(arguments: [
        (#"{"error": "model not found"}"#, "response is an error: \"model not found\""),
        (#"[1, 2]"#, "response body must be a JSON object with \"predictions\", got an array"),
        (#"{"predictions": 3}"#, "'predictions' must be a list, got a number"),
        (
            #"{"predictions": [[1, 2], [3]]}"#,
            "'predict': list at [1] has 1 entries; expected 2, like the first (the tensor must be rectangular); only numeric tensors can be translated"
        ),
        (
            #"{"outputs": [{"name": "p", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#,
            "output 'p': shape [3] has 3 elements but data has 2"
        ),
        (
            #"{"outputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}"#,
            "output 'p': datatype BYTES is not supported; expected a numeric datatype such as FP64"
        ),
        (#"{"predictions": [1]}"#, "response has no output 'x'; it has 'predict'"),
    ])
    func badResponsesAreUpstreamErrors(_ body: String, _ message: String) {
        let name: String? = message.contains("no output 'x'") ? "x" : nil
        #expect(throws: UpstreamResponseError(message)) {
            try ProtocolTranslation.outputTensor(json(body), outputName: name)
        }
    }

    @Test func v2ResponseErrorsAreUpstreamErrors() {
        #expect(throws: UpstreamResponseError("v2 response has no \"outputs\" list of tensors")) {
            try ProtocolTranslation.tfServingResponse(fromV2: json(#"{"model_name": "m"}"#))
        }
        #expect(
            throws: UpstreamResponseError(
                "output 'b' has shape [3] but output 'a' has [2]; outputs need the same number of rows"
            )
        ) {
            try ProtocolTranslation.tfServingResponse(
                fromV2: json(
                    #"{"outputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]}, {"name": "b", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}"#
                )
            )
        }
    }

    @Test func nestedFollowsShape() {
        #expect(
            NumericTensor(shape: [2, 3], values: [1, 2, 3, 4, 5, .nan]).nested() == json("[[1, 2, 3], [4, 5, null]]")
        )
        #expect(NumericTensor(shape: [], values: [4]).nested() == 4)
        #expect(NumericTensor(shape: [0, 3], values: []).nested() == [])
        #expect(NumericTensor(shape: [2, 0], values: []).nested() == [[], []])
    }
}

import Foundation
import Testing

@testable import Models

/// `examples/models/`, found from this file so tests run from any directory.
let examplesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("examples/models").path

private func loadLinear(_ name: String) throws -> LinearModel {
    guard case .embedded(let model) = try ModelLoader.load(kind: "linear", path: "\(examplesDirectory)/\(name)"),
        let linear = model as? LinearModel
    else {
        Issue.record("\(name) did not load as a linear model")
        throw ModelLoadError(path: name, message: "wrong kind")
    }
    return linear
}

private func linear(_ text: String) throws(ModelLoadError) -> LinearModel {
    let json: JSON
    do { json = try JSONParser.parse(text) } catch { throw ModelLoadError(path: "m.json", message: "\(error)") }
    return try LinearModel(json: json, path: "m.json")
}

private func loadError(_ text: String) -> String? {
    do {
        _ = try linear(text)
        return nil
    } catch {
        return error.description
    }
}

/// Relative closeness for parity with scikit-learn.
private func isClose(_ a: Double, _ b: Double, relative: Double = 1e-6) -> Bool {
    abs(a - b) <= relative * max(abs(a), abs(b))
}

struct LinearModelTests {
    @Test(arguments: [("churn-linear-v1.json", "predict_proba_1"), ("churn-linear-v2.json", "v2_predict_proba_1")])
    func matchesScikitLearn(_ file: String, _ key: String) throws {
        let expected = try JSONParser.parse(
            ModelLoader.readFile("\(examplesDirectory)/churn-linear-v1.expected.json")
        )
        let instances = try #require(expected["instances"]?.arrayValue)
        let probabilityValues = expected[key]?.arrayValue?.compactMap(\.doubleValue)
        let probabilities = try #require(probabilityValues)
        let model = try loadLinear(file)
        #expect(model.featureNames == ["tenure_months", "monthly_charges", "support_calls", "contract_months"])
        #expect(model.featureCount == 4)

        let matrix = try TFServingCodec.decodeInstances(
            ["instances": .array(instances)],
            featureNames: model.featureNames,
            featureCount: model.featureCount
        )
        let predictions = try model.predict(matrix)
        #expect(predictions.count == probabilities.count)
        #expect(probabilities.count == 8)
        for (prediction, probability) in zip(predictions, probabilities) {
            let value = try #require(prediction.doubleValue, "a single-output model predicts a number")
            #expect(isClose(value, probability), "\(value) vs scikit-learn \(probability)")
        }
    }

    @Test func literalParityForTheFirstCustomer() throws {
        // Also embedded here, so a regenerated expected file cannot hide a drift.
        let model = try loadLinear("churn-linear-v1.json")
        let prediction = try model.predict(FeatureMatrix([[12, 73.36, 2, 1]]))
        #expect(isClose(try #require(prediction[0].doubleValue), 0.8906722628860125))
    }

    @Test func linksAndOutputs() throws {
        let identity = try linear(#"{"coef": [1, 2], "intercept": 0.5}"#)
        #expect(try identity.predict(FeatureMatrix([[1, 1], [0, -1]])) == [3.5, -1.5])
        #expect(identity.featureNames == nil)

        let oneRow = try linear(#"{"coef": [[1, 2]], "intercept": [0], "link": "logistic"}"#)
        #expect(try oneRow.predict(FeatureMatrix([[0, 0]])) == [0.5])

        let multi = try linear(#"{"coef": [[1, 0], [0, 1]], "intercept": [0, 1]}"#)
        #expect(try multi.predict(FeatureMatrix([[2, 3]])) == [[2, 4]])

        let perOutput = try linear(#"{"coef": [[0], [0]], "link": "logistic"}"#)
        #expect(try perOutput.predict(FeatureMatrix([[5]])) == [[0.5, 0.5]])

        let softmax = try linear(#"{"coef": [[1], [0], [-1]], "intercept": [0, 0, 0], "link": "softmax"}"#)
        let probabilities = try #require(try softmax.predict(FeatureMatrix([[1000]]))[0].arrayValue)
        #expect(probabilities == [1, 0, 0])
        let evenValues = try softmax.predict(FeatureMatrix([[0]]))[0].arrayValue?.compactMap(\.doubleValue)
        let even = try #require(evenValues)
        #expect(even.allSatisfy { isClose($0, 1.0 / 3) })

        let logistic = try linear(#"{"coef": [1], "link": "logistic"}"#)
        #expect(try logistic.predict(FeatureMatrix([[-800], [800]])) == [0, 1])
    }

    @Test func refusesMissingFeaturesAndWrongWidths() throws {
        let model = try loadLinear("churn-linear-v1.json")
        #expect(
            throws: ModelError.badRequest(
                "instance 1: feature 'support_calls' is missing; linear models need every feature"
            )
        ) {
            try model.predict(FeatureMatrix(rows: 2, columns: 4, values: [1, 2, 3, 4, 1, 2, .nan, 4]))
        }
        let unnamed = try linear(#"{"coef": [1, 2, 3]}"#)
        #expect(throws: ModelError.badRequest("instance 0: feature 2 is missing; linear models need every feature")) {
            try unnamed.predict(FeatureMatrix([[1, 2, .nan]]))
        }
        #expect(throws: ModelError.badRequest("expected 3 features per instance, got 2")) {
            try unnamed.predict(FeatureMatrix([[1, 2]]))
        }
        let huge = try linear(#"{"coef": [1e308, 1e308]}"#)
        #expect(throws: ModelError.badRequest("instance 0: prediction is not finite; feature values are out of range"))
        {
            try huge.predict(FeatureMatrix([[10, 10]]))
        }
    }

    @Test(arguments: [
        (#"[1, 2]"#, "linear model: expected a JSON object with 'coef', got an array"),
        (#"{"intercept": 1}"#, "linear model: missing 'coef'"),
        (#"{"coef": []}"#, "linear model: 'coef' must be a non-empty list of numbers or of lists of numbers"),
        (#"{"coef": [1, "2"]}"#, "linear model: 'coef'[1] must be a number, got a string"),
        (#"{"coef": [[1, 2], [3]]}"#, "linear model: 'coef' row 1 has 1 entries but row 0 has 2"),
        (#"{"coef": [[1, 2], 3]}"#, "linear model: 'coef' row 1 must be a non-empty list of numbers, got a number"),
        (
            #"{"coef": [1, 2, 3, 4], "feature_names": ["a", "b", "c"]}"#,
            "linear model: 'coef' has 4 entries but 'feature_names' has 3"
        ),
        (
            #"{"coef": [[1, 2]], "feature_names": ["a"]}"#,
            "linear model: 'coef' has rows of 2 entries but 'feature_names' has 1"
        ),
        (#"{"coef": [1], "feature_names": [1]}"#, "linear model: 'feature_names'[0] must be a non-empty string, got 1"),
        (#"{"coef": [1, 2], "feature_names": ["a", "a"]}"#, "linear model: 'feature_names' has 'a' twice"),
        (
            #"{"coef": [[1], [2]], "intercept": 0}"#,
            "linear model: 'intercept' is one number but 'coef' has 2 output rows; expected a list of 2"
        ),
        (
            #"{"coef": [[1], [2]], "intercept": [0]}"#,
            "linear model: 'intercept' has 1 entries but 'coef' has 2 output rows"
        ),
        (
            #"{"coef": [1], "intercept": "0"}"#,
            "linear model: 'intercept' must be a number or a list of numbers, got a string"
        ),
        (
            #"{"coef": [1], "link": "probit"}"#,
            #"linear model: 'link' must be "identity", "logistic" or "softmax", got "probit""#
        ),
        (
            #"{"coef": [1], "link": "softmax"}"#,
            "linear model: 'link' softmax needs 2 or more outputs, but 'coef' has 1"
        ),
        (
            #"{"coef": [1], "coefs": [1]}"#,
            "linear model: unknown key 'coefs'; expected coef, intercept, link, feature_names or metadata"
        ),
    ])
    func loadErrorsNameTheKeyAtFault(_ text: String, _ message: String) {
        #expect(loadError(text) == "m.json: \(message)")
    }
}

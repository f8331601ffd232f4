import Foundation
import Testing

@testable import Models

private func loadXGBoost(_ name: String) throws -> XGBoostModel {
    guard case .embedded(let model) = try ModelLoader.load(kind: "xgboost", path: "\(examplesDirectory)/\(name)"),
        let xgboost = model as? XGBoostModel
    else {
        Issue.record("\(name) did not load as an XGBoost model")
        throw ModelLoadError(path: name, message: "wrong kind")
    }
    return xgboost
}

/// A fixture's `*.expected.json`: rows (null = missing) and XGBoost's own outputs for them.
private struct Expected {
    var instances: [JSON]
    var rows: FeatureMatrix
    var predictions: [JSON]
    var margins: [JSON]
    var featureNames: [String]
    var objective: String

    init(_ name: String) throws {
        let json = try JSONParser.parse(ModelLoader.readFile("\(examplesDirectory)/\(name).expected.json"))
        func field<T>(_ value: T?, _ key: String) throws -> T {
            guard let value else { throw ModelLoadError(path: "\(name).expected.json", message: "no usable '\(key)'") }
            return value
        }
        instances = try field(json["instances"]?.arrayValue, "instances")
        rows = FeatureMatrix(instances.map { $0.arrayValue!.map { $0.doubleValue ?? .nan } })
        predictions = try field(json["predictions"]?.arrayValue, "predictions")
        margins = try field(json["margins"]?.arrayValue, "margins")
        featureNames = try field(json["feature_names"]?.arrayValue?.compactMap(\.stringValue), "feature_names")
        objective = try field(json["objective"]?.stringValue, "objective")
    }
}

private func flat(_ values: [JSON]) -> [Double] {
    values.flatMap { value -> [Double] in
        if case .array(let inner) = value { return inner.map { $0.doubleValue! } }
        return [value.doubleValue!]
    }
}

/// The largest relative difference, with differences below 1e-12 in absolute value ignored.
private func maxRelativeDifference(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).map { x, y in
        let difference = abs(x - y)
        return difference < 1e-12 ? 0 : difference / max(abs(x), abs(y))
    }.max() ?? 0
}

private let fixtures = [
    "xgb-cancer-logistic", "xgb-cancer-logitraw", "xgb-cancer-reglogistic", "xgb-iris-softprob", "xgb-iris-softmax",
    "xgb-diabetes-reg", "churn-xgb-v3", "xgb1-cancer-logistic", "xgb1-iris-softprob", "xgb1-diabetes-reg",
]

private func xgboost(_ text: String) throws(ModelLoadError) -> XGBoostModel {
    let json: JSON
    do { json = try JSONParser.parse(text) } catch { throw ModelLoadError(path: "m.json", message: "\(error)") }
    return try XGBoostModel(json: json, path: "m.json")
}

private func loadError(_ text: String) -> String? {
    do {
        _ = try xgboost(text)
        return nil
    } catch {
        return error.description
    }
}

/// A small valid model: one tree `x0 < 0.5 ? (x1 < 2 ? 1 : 2) : 3`, missing x0 goes right and
/// missing x1 goes left; pieces can be replaced to make it invalid.
private func tinyModel(
    objective: String = "reg:squarederror",
    booster: String = "gbtree",
    baseScore: String = "\"[0E0]\"",
    left: String = "[1, 3, -1, -1, -1]",
    right: String = "[2, 4, -1, -1, -1]",
    indices: String = "[0, 1, 0, 0, 0]",
    conditions: String = "[0.5, 2, 3, 1, 2]",
    defaultLeft: String = "[0, 1, 0, 0, 0]",
    splitType: String = "[0, 0, 0, 0, 0]",
    numNodes: String = "5",
    numClass: String = "0",
    treeInfo: String = "[0]",
    featureTypes: String = "[]",
    version: String = "[3, 2, 0]",
    extraTreeKeys: String = ""
) -> String {
    """
    {"learner": {"attributes": {}, "feature_names": ["a", "b"], "feature_types": \(featureTypes),
      "gradient_booster": {"name": "\(booster)", "model": {
        "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1"},
        "iteration_indptr": [0, 1], "tree_info": \(treeInfo),
        "trees": [{"id": 0, "base_weights": [0, 0, 0, 0, 0], "loss_changes": [0, 0, 0, 0, 0],
          "sum_hessian": [1, 1, 1, 1, 1], "parents": [2147483647, 0, 0, 1, 1],
          "left_children": \(left), "right_children": \(right), "split_indices": \(indices),
          "split_conditions": \(conditions), "default_left": \(defaultLeft), "split_type": \(splitType),
          "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
          \(extraTreeKeys)
          "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "\(numNodes)", "size_leaf_vector": "1"}}]}},
      "learner_model_param": {"base_score": \(baseScore), "boost_from_average": "1", "num_class": "\(numClass)",
        "num_feature": "2", "num_target": "1"},
      "objective": {"name": "\(objective)", "reg_loss_param": {"scale_pos_weight": "1"}}},
     "version": \(version)}
    """
}

struct XGBoostModelTests {
    @Test(arguments: fixtures)
    func matchesXGBoostPredictions(_ name: String) throws {
        let expected = try Expected(name)
        let model = try loadXGBoost("\(name).json")
        #expect(model.objective.rawValue == expected.objective)
        #expect(model.featureNames == expected.featureNames)
        let predictions = try model.predict(expected.rows)
        #expect(predictions.count == expected.rows.rows)
        // Same nesting as Booster.predict: numbers, or one list per row for multi:softprob.
        #expect(predictions.map { $0.arrayValue?.count } == expected.predictions.map { $0.arrayValue?.count })
        let difference = maxRelativeDifference(flat(predictions), flat(expected.predictions))
        #expect(difference <= 1e-6, "\(name): largest relative difference \(difference)")
        let margins = try model.predictMargins(expected.rows).map(Double.init)
        let marginDifference = maxRelativeDifference(margins, flat(expected.margins))
        #expect(marginDifference <= 1e-6, "\(name): largest relative margin difference \(marginDifference)")
    }

    @Test(arguments: fixtures)
    func rowsOneAtATimeMatchTheBatch(_ name: String) throws {
        let expected = try Expected(name)
        let model = try loadXGBoost("\(name).json")
        let batch = try model.predict(expected.rows)
        for row in 0..<expected.rows.rows {
            let single = FeatureMatrix(rows: 1, columns: expected.rows.columns, values: Array(expected.rows.row(row)))
            #expect(try model.predict(single) == [batch[row]])
        }
    }

    @Test func fixturesCoverMissingValuesInBothDirections() throws {
        let model = try loadXGBoost("xgb-cancer-logistic.json")
        let splits = model.nodes.filter { $0.left >= 0 }
        #expect(splits.contains { $0.feature & XGBoostNode.defaultLeftBit != 0 })
        #expect(splits.contains { $0.feature & XGBoostNode.defaultLeftBit == 0 })
        #expect(try Expected("xgb-cancer-logistic").rows.values.contains { $0.isNaN })
    }

    @Test func instancesMayBeObjectsKeyedByFeatureName() throws {
        let expected = try Expected("churn-xgb-v3")
        let model = try loadXGBoost("churn-xgb-v3.json")
        #expect(model.featureNames == ["tenure_months", "monthly_charges", "support_calls", "contract_months"])
        var objects: [JSON] = []
        for instance in expected.instances {
            var object = JSONObject()
            // Absent (not null) for missing values, in reverse order: both must decode the same.
            for (name, value) in zip(model.featureNames!, instance.arrayValue!).reversed() where !value.isNull {
                object.set(name, value)
            }
            objects.append(.object(object))
        }
        let rows = try TFServingCodec.decodeInstances(
            .object(["instances": .array(objects)]),
            featureNames: model.featureNames,
            featureCount: model.featureCount
        )
        #expect(try model.predict(rows) == model.predict(expected.rows))
        let difference = maxRelativeDifference(flat(try model.predict(rows)), flat(expected.predictions))
        #expect(difference <= 1e-6)
    }

    @Test func multiclassTreesAddToTheirOwnClass() throws {
        let model = try loadXGBoost("xgb-iris-softprob.json")
        #expect(model.groupCount == 3)
        #expect(model.treeCount == 15)
        #expect(model.treeGroups == (0..<15).map { Int32($0 % 3) })
        #expect(model.outputWidth == 3)
        let softmax = try loadXGBoost("xgb-iris-softmax.json")
        #expect(softmax.outputWidth == 1)
        #expect(softmax.outputDatatype == .int64)
        let rows = try Expected("xgb-iris-softmax").rows
        // The class index is the argmax of the softprob model's probabilities (same trees and data).
        let probabilities = try model.predictOutputs(rows)
        let classes = try softmax.predictOutputs(rows)
        for row in 0..<rows.rows {
            let slice = Array(probabilities[(row * 3)..<(row * 3 + 3)])
            #expect(Float(slice.firstIndex(of: slice.max()!)!) == classes[row])
            #expect(abs(slice.reduce(0, +) - 1) < 1e-6)
        }
    }

    @Test func baseScoreAsEachVersionStoresIt() throws {
        // 3.x: a per-target array in a string; margins start there (identity for squared error).
        #expect(try xgboost(tinyModel(baseScore: "\"[1.5E0]\"")).baseMargins == [1.5])
        // 1.x and 2.x: a scalar string; logistic objectives take its logit.
        #expect(try xgboost(tinyModel(objective: "binary:logistic", baseScore: "\"5E-1\"")).baseMargins == [0])
        #expect(
            try xgboost(tinyModel(objective: "reg:logistic", baseScore: "\"[7.5E-1]\"")).baseMargins == [
                -logf(1 / 0.75 - 1)
            ]
        )
        // binary:logitraw: identity since XGBoost 1.4, the logit before.
        #expect(try xgboost(tinyModel(objective: "binary:logitraw", baseScore: "\"5E-1\"")).baseMargins == [0.5])
        #expect(
            try xgboost(tinyModel(objective: "binary:logitraw", baseScore: "\"5E-1\"", version: "[1, 3, 0]"))
                .baseMargins
                == [0]
        )
        // Multiclass: one per class, or one for all.
        let perClass = tinyModel(objective: "multi:softprob", baseScore: "\"[1E0,2E0,3E0]\"", numClass: "3")
        #expect(try xgboost(perClass).baseMargins == [1, 2, 3])
        #expect(
            try xgboost(tinyModel(objective: "multi:softmax", baseScore: "\"5E-1\"", numClass: "3")).baseMargins == [
                0.5, 0.5, 0.5,
            ]
        )
    }

    @Test func missingValuesFollowTheDefaultDirection() throws {
        let model = try xgboost(tinyModel())
        let rows = FeatureMatrix([[0, 1], [0, 3], [1, 1], [.nan, 1], [0, .nan], [.nan, .nan]])
        // x0 < 0.5 → (x1 < 2 → 1, else 2), else 3; missing x0 → right (3), missing x1 → left (1).
        #expect(try model.predict(rows) == [1, 2, 3, 3, 1, 3])
    }

    @Test func requestErrorsNameWhatWasExpected() throws {
        let model = try loadXGBoost("churn-xgb-v3.json")
        #expect(throws: ModelError.badRequest("expected 4 features per instance, got 3")) {
            try model.predict(FeatureMatrix([[1, 2, 3]]))
        }
        #expect(
            throws: ModelError.badRequest(
                "instance 1: feature 'monthly_charges' is 1e+39, outside the 32-bit float range XGBoost reads"
            )
        ) {
            try model.predict(FeatureMatrix([[1, 2, 3, 4], [1, 1e39, 3, 4]]))
        }
    }

    @Test(arguments: [
        (tinyModel(booster: "gblinear"), "booster 'gblinear' is not supported; expected gbtree"),
        (tinyModel(booster: "dart"), "booster 'dart' is not supported; expected gbtree"),
        (
            tinyModel(objective: "rank:pairwise"),
            "objective 'rank:pairwise' is not supported; expected one of reg:squarederror, reg:logistic,"
                + " binary:logistic, binary:logitraw, multi:softprob, multi:softmax"
        ),
        (tinyModel(conditions: "[0.5, 2, 3, 1]"), "tree 0: 'split_conditions' has 4 entries but 'left_children' has 5"),
        (tinyModel(left: "[1, 3, -1, -1]"), "tree 0: 'right_children' has 5 entries but 'left_children' has 4"),
        (tinyModel(numNodes: "7"), "tree 0: 'num_nodes' is \"7\" but the node arrays have 5 entries"),
        (tinyModel(left: "[1, 9, -1, -1, -1]"), "tree 0 node 1: child index 9 is out of range; expected 1 to 4"),
        (tinyModel(right: "[2, -4, -1, -1, -1]"), "tree 0 node 1: child index -4 is out of range; expected 1 to 4"),
        (tinyModel(left: "[1, 0, -1, -1, -1]"), "tree 0 node 1: child index 0 is out of range; expected 1 to 4"),
        (
            tinyModel(left: "[1, 3, 1, -1, -1]", right: "[2, 4, 4, -1, -1]"),
            "tree 0: node 1 is reached twice (a cycle or a shared subtree)"
        ),
        (
            tinyModel(left: "[1, 3, 3, -1, -1]", right: "[2, 4, 4, -1, -1]"),
            "tree 0: node 3 is reached twice (a cycle or a shared subtree)"
        ),
        (tinyModel(right: "[2, 4, 3, -1, -1]"), "tree 0 node 2 has no left child but has right child 3"),
        (
            tinyModel(indices: "[0, 2, 0, 0, 0]"),
            "tree 0 node 1: split feature 2 is out of range; the model has 2 features"
        ),
        (
            tinyModel(splitType: "[0, 1, 0, 0, 0]"),
            "tree 0 node 1 is a categorical split; categorical splits are not supported"
        ),
        (
            tinyModel(featureTypes: #"["float", "c"]"#),
            "feature 'b' is categorical; categorical features are not supported"
        ),
        (
            tinyModel(conditions: "[0.5, 2, 3, 1e40, 2]"),
            "tree 0 node 3: 'split_conditions' entry 1e+40 is not a finite number"
        ),
        (tinyModel(defaultLeft: "[0, 2, 0, 0, 0]"), "tree 0 node 1: 'default_left' entry 2 is not 0, 1 or a boolean"),
        (tinyModel(treeInfo: "[1]"), "'tree_info'[0] is 1; expected a class index below 1"),
        (tinyModel(treeInfo: "[0, 0]"), "'tree_info' has 2 entries but there are 1 trees"),
        (tinyModel(objective: "multi:softprob"), "objective multi:softprob needs 'num_class' of 2 or more, got 0"),
        (
            tinyModel(objective: "binary:logistic", baseScore: "\"[1.5E0]\""),
            "'base_score' must be in (0, 1) for binary:logistic, got 1.5"
        ),
        (tinyModel(baseScore: "\"[1E0,2E0]\""), "'base_score' has 2 values but the model has 1 outputs"),
        (tinyModel(baseScore: "\"abc\""), "'base_score' \"abc\" is not a number or a list of numbers"),
        (
            #"{"learner": 3}"#,
            "no 'learner' object at the top level; expected a file written by Booster.save_model(\"m.json\")"
        ),
        ("[1, 2]", "expected a JSON object with 'learner', got an array"),
    ])
    func refusesMalformedModels(_ text: String, _ message: String) {
        #expect(loadError(text) == "m.json: xgboost model: \(message)")
    }

    @Test func tinyModelIsValid() throws {
        // The malformed cases above differ from this valid model in one place only.
        let model = try xgboost(tinyModel())
        #expect(model.nodeCount == 5)
        #expect(model.writerVersion == [3, 2, 0])
    }

    @Test func refusesMultiTargetTreesAndFilesThatAreNotJSON() throws {
        let vector = tinyModel().replacingOccurrences(
            of: "\"size_leaf_vector\": \"1\"",
            with: "\"size_leaf_vector\": \"3\""
        )
        #expect(
            loadError(vector)
                == "m.json: xgboost model: tree 0 has vector leaves ('size_leaf_vector' \"3\"); multi-target trees are not supported"
        )
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xgb-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("m.ubj").path
        try Data([0x7B, 0x4C, 0x00]).write(to: URL(fileURLWithPath: path))
        #expect(throws: ModelLoadError.self) { try ModelLoader.load(kind: "xgboost", path: path) }
        let truncated = directory.appendingPathComponent("t.json").path
        let text = try String(contentsOfFile: "\(examplesDirectory)/churn-xgb-v3.json", encoding: .utf8)
        try Data(text.utf8.prefix(text.utf8.count / 2)).write(to: URL(fileURLWithPath: truncated))
        do {
            _ = try ModelLoader.load(kind: "xgboost", path: truncated)
            Issue.record("a truncated file loaded")
        } catch {
            #expect(error.message.hasPrefix("xgboost model: file is not JSON: "))
        }
    }

    @Test func randomlyDamagedModelsNeverCrash() throws {
        // Replace numbers in the node arrays of a real model with random ones: every result
        // either loads (and then predicts without trapping) or is a load error.
        let text = try String(contentsOfFile: "\(examplesDirectory)/xgb-iris-softprob.json", encoding: .utf8)
        let json = try JSONParser.parse(text)
        var rng = SplitMix64(seed: 0x5EED_0003)
        let rows = try Expected("xgb-iris-softprob").rows
        var loaded = 0
        for _ in 0..<300 {
            var damaged = json
            damage(&damaged, rng: &rng)
            if let model = try? XGBoostModel(json: damaged, path: "m.json") {
                loaded += 1
                _ = try model.predict(rows)
            }
        }
        #expect(loaded > 0)
    }
}

/// Sets one random child index, split index or default direction of one random tree node.
private func damage(_ model: inout JSON, rng: inout SplitMix64) {
    guard case .object(var root) = model, case .object(var learner)? = root["learner"],
        case .object(var booster)? = learner["gradient_booster"], case .object(var forest)? = booster["model"],
        case .array(var trees)? = forest["trees"]
    else { return }
    let treeIndex = Int.random(in: 0..<trees.count, using: &rng)
    guard case .object(var tree) = trees[treeIndex] else { return }
    let key = ["left_children", "right_children", "split_indices", "default_left", "split_type"].randomElement(
        using: &rng
    )!
    guard case .array(var values)? = tree[key], !values.isEmpty else { return }
    values[Int.random(in: 0..<values.count, using: &rng)] = .number(Double(Int.random(in: -3...8, using: &rng)))
    tree.set(key, .array(values))
    trees[treeIndex] = .object(tree)
    forest.set("trees", .array(trees))
    booster.set("model", .object(forest))
    learner.set("gradient_booster", .object(booster))
    root.set("learner", .object(learner))
    model = .object(root)
}

import Foundation

extension XGBoostModel {
    /// Decodes and checks a parsed XGBoost JSON model file.
    ///
    /// Everything the evaluator relies on is checked here, so a file that is not what it claims
    /// (another booster, an unknown objective, arrays of different lengths, child indexes out of
    /// range, a node reached twice, categorical splits, multi-target trees) is an error naming
    /// the tree and node at fault, never a crash or a wrong answer later.
    public init(json: JSON, path: String) throws(ModelLoadError) {
        func fail(_ message: String) -> ModelLoadError {
            ModelLoadError(path: path, message: "xgboost model: \(message)")
        }
        guard case .object(let root) = json else {
            throw fail("expected a JSON object with 'learner', got \(json.kindDescription)")
        }
        guard case .object(let learner)? = root["learner"] else {
            throw fail(
                "no 'learner' object at the top level; expected a file written by Booster.save_model(\"m.json\")"
            )
        }
        var writerVersion: [Int] = []
        if let version = root["version"] {
            let numbers = version.arrayValue?.compactMap { integer($0) } ?? []
            guard numbers.count == version.arrayValue?.count, !numbers.isEmpty else {
                throw fail("'version' must be a list of integers such as [3, 2, 0], got \(version)")
            }
            writerVersion = numbers
        }

        // Booster.
        guard case .object(let booster)? = learner["gradient_booster"] else {
            throw fail("'learner' has no 'gradient_booster' object")
        }
        guard case .string(let boosterName)? = booster["name"] else {
            throw fail("'gradient_booster' has no 'name'")
        }
        guard boosterName == "gbtree" else {
            throw fail("booster '\(boosterName)' is not supported; expected gbtree")
        }
        guard case .object(let forest)? = booster["model"] else {
            throw fail("'gradient_booster' has no 'model' object")
        }

        // Objective.
        guard case .object(let objectiveObject)? = learner["objective"],
            case .string(let objectiveName)? = objectiveObject["name"]
        else {
            throw fail("'learner' has no 'objective' with a 'name'")
        }
        let objective: Objective
        if objectiveName == "reg:linear" {
            objective = .squaredError  // the name XGBoost used before 1.0
        } else if let known = Objective(rawValue: objectiveName) {
            objective = known
        } else {
            throw fail(
                "objective '\(objectiveName)' is not supported; expected one of "
                    + Objective.allCases.map(\.rawValue).joined(separator: ", ")
            )
        }

        // Learner parameters.
        guard case .object(let parameters)? = learner["learner_model_param"] else {
            throw fail("'learner' has no 'learner_model_param' object")
        }
        guard let featureValue = parameters["num_feature"], let featureCount = integer(featureValue), featureCount >= 1,
            featureCount <= Int(XGBoostNode.featureMask)
        else {
            throw fail(
                "'num_feature' must be a positive integer, got \(parameters["num_feature"]?.description ?? "nothing")"
            )
        }
        var classCount = 0
        if let value = parameters["num_class"] {
            guard let count = integer(value), count >= 0 else {
                throw fail("'num_class' must be a non-negative integer, got \(value)")
            }
            classCount = count
        }
        if let value = parameters["num_target"] {
            guard let count = integer(value), count == 1 else {
                throw fail("'num_target' is \(value); only single-target models are supported")
            }
        }
        let groupCount: Int
        if objective.isMulticlass {
            guard classCount >= 2 else {
                throw fail("objective \(objective.rawValue) needs 'num_class' of 2 or more, got \(classCount)")
            }
            groupCount = classCount
        } else {
            guard classCount <= 1 else {
                throw fail("objective \(objective.rawValue) has 'num_class' \(classCount); expected 0")
            }
            groupCount = 1
        }
        let baseMargins = try Self.baseMargins(
            parameters["base_score"],
            objective: objective,
            groupCount: groupCount,
            writerVersion: writerVersion,
            fail: fail
        )

        // Feature names and types.
        var featureNames: [String]?
        if case .array(let list)? = learner["feature_names"], !list.isEmpty {
            var names: [String] = []
            var seen = Set<String>()
            for (k, entry) in list.enumerated() {
                guard case .string(let name) = entry, !name.isEmpty else {
                    throw fail("'feature_names'[\(k)] must be a non-empty string, got \(entry)")
                }
                guard seen.insert(name).inserted else { throw fail("'feature_names' has '\(name)' twice") }
                names.append(name)
            }
            guard names.count == featureCount else {
                throw fail("'feature_names' has \(names.count) names but 'num_feature' is \(featureCount)")
            }
            featureNames = names
        } else if let value = learner["feature_names"], value.arrayValue == nil {
            throw fail("'feature_names' must be a list of strings, got \(value.kindDescription)")
        }
        if case .array(let types)? = learner["feature_types"] {
            for (k, type) in types.enumerated() where type == "c" {
                let label = featureNames.map { "'\($0[min(k, $0.count - 1)])'" } ?? "\(k)"
                throw fail("feature \(label) is categorical; categorical features are not supported")
            }
        }

        // Trees.
        guard case .array(let trees)? = forest["trees"] else { throw fail("'model' has no 'trees' list") }
        guard case .array(let treeInfo)? = forest["tree_info"] else { throw fail("'model' has no 'tree_info' list") }
        guard treeInfo.count == trees.count else {
            throw fail("'tree_info' has \(treeInfo.count) entries but there are \(trees.count) trees")
        }
        if case .object(let forestParameters)? = forest["gbtree_model_param"], let value = forestParameters["num_trees"]
        {
            guard let count = integer(value), count == trees.count else {
                throw fail("'num_trees' is \(value) but there are \(trees.count) trees")
            }
        }
        var nodes: [XGBoostNode] = []
        var roots: [Int32] = []
        var groups: [Int32] = []
        roots.reserveCapacity(trees.count)
        groups.reserveCapacity(trees.count)
        for (index, tree) in trees.enumerated() {
            guard let group = integer(treeInfo[index]), group >= 0, group < groupCount else {
                throw fail("'tree_info'[\(index)] is \(treeInfo[index]); expected a class index below \(groupCount)")
            }
            let offset = nodes.count
            guard offset < Int(Int32.max) else { throw fail("too many tree nodes") }
            try Self.appendTree(tree, index: index, featureCount: featureCount, to: &nodes, fail: fail)
            roots.append(Int32(offset))
            groups.append(Int32(group))
        }
        self.init(
            objective: objective,
            featureNames: featureNames,
            featureCount: featureCount,
            groupCount: groupCount,
            baseMargins: baseMargins,
            writerVersion: writerVersion,
            nodes: nodes,
            treeRoots: roots,
            treeGroups: groups
        )
    }

    /// `base_score` in margin space, one per group.
    ///
    /// XGBoost stores it in output space: a string such as `"5E-1"` (1.x, 2.x) or a per-target
    /// array in a string such as `"[6.274165E-1]"` or `"[0E0,0E0,0E0]"` (3.x). The logistic
    /// objectives turn it into a margin with `-log(1/p - 1)` in float arithmetic
    /// (`ProbToMargin`); `binary:logitraw` does so only in files written before XGBoost 1.4,
    /// which made its `ProbToMargin` the identity (dmlc/xgboost#6517).
    private static func baseMargins(
        _ value: JSON?,
        objective: Objective,
        groupCount: Int,
        writerVersion: [Int],
        fail: (String) -> ModelLoadError
    ) throws(ModelLoadError) -> [Float] {
        var scores: [Float]
        switch value {
        case nil:
            scores = [0.5]
        case .number(let number)?:
            scores = [Float(number)]
        case .string(let text)?:
            var body = Substring(text.trimmingCharacters(in: .whitespaces))
            if body.hasPrefix("[") && body.hasSuffix("]") { body = body.dropFirst().dropLast() }
            scores = []
            for part in body.split(separator: ",", omittingEmptySubsequences: false) {
                guard let score = Float(part.trimmingCharacters(in: .whitespaces)) else {
                    throw fail("'base_score' \"\(text)\" is not a number or a list of numbers")
                }
                scores.append(score)
            }
        case let other?:
            throw fail("'base_score' must be a string such as \"5E-1\", got \(other.kindDescription)")
        }
        guard scores.allSatisfy(\.isFinite) else { throw fail("'base_score' \(value!) is not finite") }
        if scores.count == 1 && groupCount > 1 { scores = Array(repeating: scores[0], count: groupCount) }
        guard scores.count == groupCount else {
            throw fail("'base_score' has \(scores.count) values but the model has \(groupCount) outputs")
        }
        let logit: Bool
        switch objective {
        case .regressionLogistic, .binaryLogistic: logit = true
        case .binaryLogitRaw: logit = !writerVersion.isEmpty && writerVersion.lexicographicallyPrecedes([1, 4])
        case .squaredError, .multiSoftprob, .multiSoftmax: logit = false
        }
        guard logit else { return scores }
        return try scores.map { (score) throws(ModelLoadError) -> Float in
            guard score > 0 && score < 1 else {
                throw fail("'base_score' must be in (0, 1) for \(objective.rawValue), got \(score)")
            }
            return -logf(1 / score - 1)
        }
    }

    /// Checks one tree and appends its nodes with absolute child indexes.
    private static func appendTree(
        _ tree: JSON,
        index: Int,
        featureCount: Int,
        to nodes: inout [XGBoostNode],
        fail: (String) -> ModelLoadError
    ) throws(ModelLoadError) {
        let name = "tree \(index)"
        guard case .object(let object) = tree else {
            throw fail("\(name) is \(tree.kindDescription); expected an object")
        }
        func list(_ key: String) throws(ModelLoadError) -> [JSON] {
            guard case .array(let values)? = object[key] else { throw fail("\(name) has no '\(key)' list") }
            return values
        }
        let left = try list("left_children")
        let right = try list("right_children")
        let splitIndices = try list("split_indices")
        let conditions = try list("split_conditions")
        let defaultLeft = try list("default_left")
        let count = left.count
        guard count >= 1 else { throw fail("\(name) has no nodes") }
        for (key, values) in [
            ("right_children", right), ("split_indices", splitIndices), ("split_conditions", conditions),
            ("default_left", defaultLeft),
        ] where values.count != count {
            throw fail("\(name): '\(key)' has \(values.count) entries but 'left_children' has \(count)")
        }
        if case .object(let treeParameters)? = object["tree_param"] {
            if let value = treeParameters["num_nodes"] {
                guard let declared = integer(value), declared == count else {
                    throw fail("\(name): 'num_nodes' is \(value) but the node arrays have \(count) entries")
                }
            }
            if let value = treeParameters["size_leaf_vector"] {
                guard let size = integer(value), size <= 1 else {
                    throw fail(
                        "\(name) has vector leaves ('size_leaf_vector' \(value)); multi-target trees are not supported"
                    )
                }
            }
        }
        if case .array(let types)? = object["split_type"] {
            guard types.count == count else {
                throw fail("\(name): 'split_type' has \(types.count) entries but 'left_children' has \(count)")
            }
            for (node, type) in types.enumerated() where integer(type) != 0 {
                throw fail("\(name) node \(node) is a categorical split; categorical splits are not supported")
            }
        }
        if case .array(let categoryNodes)? = object["categories_nodes"], !categoryNodes.isEmpty {
            throw fail("\(name) has categorical splits; categorical splits are not supported")
        }
        guard count <= Int(Int32.max) - nodes.count else { throw fail("too many tree nodes") }
        let offset = nodes.count
        nodes.reserveCapacity(offset + count)
        for node in 0..<count {
            guard let leftChild = integer(left[node]), let rightChild = integer(right[node]) else {
                throw fail("\(name) node \(node): child indexes must be integers, got \(left[node]) and \(right[node])")
            }
            guard case .number(let condition) = conditions[node], Float(condition).isFinite else {
                throw fail("\(name) node \(node): 'split_conditions' entry \(conditions[node]) is not a finite number")
            }
            if leftChild == -1 {
                guard rightChild == -1 else {
                    throw fail("\(name) node \(node) has no left child but has right child \(rightChild)")
                }
                nodes.append(XGBoostNode(value: Float(condition), feature: 0, left: -1, right: -1))
                continue
            }
            for child in [leftChild, rightChild] where child < 1 || child >= count {
                throw fail("\(name) node \(node): child index \(child) is out of range; expected 1 to \(count - 1)")
            }
            guard leftChild != rightChild else {
                throw fail("\(name) node \(node): both children are node \(leftChild)")
            }
            guard let feature = integer(splitIndices[node]), feature >= 0, feature < featureCount else {
                throw fail(
                    "\(name) node \(node): split feature \(splitIndices[node]) is out of range; the model has \(featureCount) features"
                )
            }
            let goesLeft: Bool
            switch defaultLeft[node] {
            case .bool(let flag): goesLeft = flag
            case .number(let number) where number == 0 || number == 1: goesLeft = number == 1
            default:
                throw fail("\(name) node \(node): 'default_left' entry \(defaultLeft[node]) is not 0, 1 or a boolean")
            }
            nodes.append(
                XGBoostNode(
                    value: Float(condition),
                    feature: UInt32(feature) | (goesLeft ? XGBoostNode.defaultLeftBit : 0),
                    left: Int32(offset + leftChild),
                    right: Int32(offset + rightChild)
                )
            )
        }
        // Every node reachable from the root must be reached once: no cycle, no shared subtree, so
        // every walk ends at a leaf. (Unreachable nodes, such as pruned ones, are allowed.)
        var reached = [Bool](repeating: false, count: count)
        reached[0] = true
        var pending = [0]
        while let node = pending.popLast() {
            let entry = nodes[offset + node]
            guard entry.left >= 0 else { continue }
            for child in [Int(entry.left) - offset, Int(entry.right) - offset] {
                guard !reached[child] else {
                    throw fail("\(name): node \(child) is reached twice (a cycle or a shared subtree)")
                }
                reached[child] = true
                pending.append(child)
            }
        }
    }
}

/// An integer given as a JSON number or as a decimal string (XGBoost writes parameters as strings).
private func integer(_ value: JSON) -> Int? {
    switch value {
    case .number(let number):
        guard number.rounded() == number, abs(number) < 1e15 else { return nil }
        return Int(number)
    case .string(let text):
        return Int(text)
    default:
        return nil
    }
}

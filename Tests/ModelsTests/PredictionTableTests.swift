import Foundation
import Testing

@testable import Models

private func table(_ text: String) throws(ModelLoadError) -> PredictionTable {
    try PredictionTable(csv: Array(text.utf8), path: "t.csv")
}

private func tableError(_ bytes: [UInt8]) -> String? {
    do {
        _ = try PredictionTable(csv: bytes, path: "t.csv")
        return nil
    } catch {
        return error.description
    }
}

struct PredictionTableTests {
    @Test func looksUpOneOutputAsANumber() throws {
        let scores = try table("customer_id,score\n1001,0.25\n1002,0.75\n")
        #expect(scores.keyColumn == "customer_id")
        #expect(scores.outputColumns == ["score"])
        #expect(scores.count == 2)
        #expect(scores.lookup("1001") == 0.25)
        #expect(scores.lookup("1003") == nil)
        #expect(try scores.predict(keys: ["1002", "1001"]) == [0.75, 0.25])
        #expect(throws: ModelError.noPrediction("no prediction for key '9' in column 'customer_id'")) {
            try scores.predict(keys: ["1001", "9"])
        }
    }

    @Test func severalOutputsAreArraysWithRFC4180Quoting() throws {
        let text =
            "\u{FEFF}id,label,p0,\"p,1\"\r\n"
            + "a,\"churn, likely\",0.1,0.9\r\n"
            + "\"b\"\"x\",\"two\nlines\",,1e-3\r\n"
            + "\r\n"
            + "c,007,\"0.5\",-0\n"
            + "d,\"\",nan,1"
        let multi = try table(text)
        #expect(multi.keyColumn == "id")
        #expect(multi.outputColumns == ["label", "p0", "p,1"])
        #expect(multi.lookup("a") == ["churn, likely", 0.1, 0.9])
        #expect(multi.lookup("b\"x") == ["two\nlines", .null, 0.001])
        // Not JSON numbers (leading zeros, quoted) stay strings.
        #expect(multi.lookup("c") == ["007", "0.5", 0])
        #expect(multi.lookup("d") == ["", "nan", 1])
        #expect(multi.count == 4)
    }

    @Test(arguments: [
        (
            "customer_id,score\n1001,0.1\n1002,0.2\n1001,0.3\n",
            "t.csv: table: line 4: duplicate key '1001' (first on line 2)"
        ),
        ("k,v\n\"a\nb\",1\n\"a\nb\",2\n", "t.csv: table: line 4: duplicate key 'a\nb' (first on line 2)"),
        ("", "t.csv: table: file is empty; expected a header row"),
        ("\n\n", "t.csv: table: file is empty; expected a header row"),
        (
            "customer_id\n1001\n",
            "t.csv: table: line 1: the header has 1 column; expected a key column and one or more outputs"
        ),
        ("k,v\n1,2,3\n", "t.csv: table: line 2: expected 2 fields like the header, got 3"),
        ("k,v\n1\n", "t.csv: table: line 2: expected 2 fields like the header, got 1"),
        ("k,v\n,2\n", "t.csv: table: line 2: empty key"),
        ("k,v\n1,\"open\n", "t.csv: table: line 2: unterminated quoted field"),
        ("k,v\n1,\"a\"b\n", "t.csv: table: line 2: unexpected character 'b' after a quoted field"),
        (
            "k,v\n1,a\"b\n",
            "t.csv: table: line 2: quote inside an unquoted field; quote the whole field and double the quote"
        ),
        ("k,v\r1,2\n", "t.csv: table: line 1: carriage return without a line feed"),
    ])
    func loadErrorsNameTheLine(_ text: String, _ message: String) {
        #expect(tableError(Array(text.utf8)) == message)
    }

    @Test func refusesInvalidUTF8() {
        #expect(tableError(Array("k,v\n1,".utf8) + [0xFF] + Array("\n".utf8)) == "t.csv: table: line 2: invalid UTF-8")
    }

    @Test func keysFromRequestValues() {
        #expect(PredictionTable.key(for: 1001) == "1001")
        #expect(PredictionTable.key(for: "1001") == "1001")
        #expect(PredictionTable.key(for: 0.5) == "0.5")
        #expect(PredictionTable.key(for: true) == "true")
        #expect(PredictionTable.key(for: .null) == nil)
        #expect(PredictionTable.key(for: [1]) == nil)
    }

    @Test func exampleScoresAgreeWithTheLinearModel() throws {
        guard
            case .table(let scores) = try ModelLoader.load(kind: .table, path: "\(examplesDirectory)/churn-scores.csv")
        else {
            Issue.record("churn-scores.csv did not load as a table")
            return
        }
        #expect(scores.count == 100)
        #expect(scores.keyColumn == "customer_id")
        #expect(scores.lookup("1100") != nil)
        #expect(scores.lookup("1101") == nil)
        let expected = try JSONParser.parse(
            ModelLoader.readFile("\(examplesDirectory)/churn-linear-v1.expected.json")
        )
        let ids = try #require(expected["customer_ids"]?.arrayValue)
        let probabilities = try #require(expected["predict_proba_1"]?.arrayValue)
        for (id, probability) in zip(ids, probabilities) {
            #expect(scores.lookup(try #require(PredictionTable.key(for: id))) == probability)
        }
    }
}

struct ModelLoaderTests {
    @Test func refusesUnknownKindsAndLoadsXGBoost() throws {
        #expect(
            throws: ModelLoadError(path: "m", message: "unknown model kind 'tree'; expected linear, table or xgboost")
        ) {
            try ModelLoader.load(kind: "tree", path: "m")
        }
        guard
            case .embedded(let model) = try ModelLoader.load(
                kind: "xgboost",
                path: "\(examplesDirectory)/churn-xgb-v3.json"
            )
        else {
            Issue.record("churn-xgb-v3.json did not load as an embedded model")
            return
        }
        #expect(model.featureCount == 4)
        #expect(model is XGBoostModel)
    }

    @Test func reportsUnreadableFiles() throws {
        #expect(throws: ModelLoadError(path: "/nonexistent/m.json", message: "cannot open: No such file or directory"))
        {
            try ModelLoader.load(kind: .linear, path: "/nonexistent/m.json")
        }
        #expect(throws: ModelLoadError(path: examplesDirectory, message: "not a regular file")) {
            try ModelLoader.load(kind: .table, path: examplesDirectory)
        }
        let path = NSTemporaryDirectory() + "switchyard-models-\(getpid()).json"
        defer { unlink(path) }
        try Data("{\"coef\": [1,]}".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ModelLoadError(path: path, message: "file is 14 bytes; the limit is 10")) {
            try ModelLoader.readFile(path, maxBytes: 10)
        }
        #expect(try ModelLoader.readFile(path, maxBytes: 14).count == 14)
        #expect(
            throws: ModelLoadError(
                path: path,
                message: "linear model: file is not JSON: unexpected character ']' at byte 12; expected a value"
            )
        ) {
            try ModelLoader.load(kind: .linear, path: path)
        }
    }
}

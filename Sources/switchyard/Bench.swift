import ArgumentParser
import Compare
import Foundation
import Models

/// Micro-benchmarks behind `bench/models/run.sh`: not part of the product's surface.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro-benchmarks of the embedded evaluators and the JSON parser (for bench/ scripts).",
        shouldDisplay: false,
        subcommands: [BenchModel.self, BenchJSON.self, BenchCompareText.self]
    )
}

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Median nanoseconds per row of an embedded model's predict, for batches of each size."
    )

    @Option(help: "Model kind: xgboost, linear.")
    var kind = "xgboost"

    @Argument(help: "The model file.")
    var model: String

    @Option(help: "A JSON file whose `instances` are the rows (e.g. the fixtures' .expected.json).")
    var rows: String

    @Option(help: "Batch sizes, comma-separated.")
    var batch = "1,64"

    @Option(help: "Timed calls per batch size.")
    var iterations = 20_000

    func run() throws {
        guard case .embedded(let evaluator) = try ModelLoader.load(kind: kind, path: model) else {
            throw ValidationError("\(model) is not an evaluated model")
        }
        let file = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: rows))))
        guard let instances = file["instances"] else { throw ValidationError("\(rows) has no 'instances'") }
        let all = try TFServingCodec.decodeInstances(
            .object(JSONObject([(key: "instances", value: instances)])),
            featureNames: evaluator.featureNames,
            featureCount: evaluator.featureCount,
            ignoring: []
        )
        for size in batch.split(separator: ",").compactMap({ Int($0) }) where size > 0 {
            var values: [Double] = []
            for i in 0..<size { values.append(contentsOf: all.row(i % all.rows)) }
            let matrix = FeatureMatrix(rows: size, columns: all.columns, values: values)
            let perRow = try ModelBenchmark.run(model: evaluator, rows: matrix, iterations: iterations)
            print("rows=\(size) ns_per_row=\(String(format: "%.1f", perRow))")
        }
    }
}

struct BenchJSON: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "json",
        abstract: "Median microseconds per parse: Switchyard's JSON parser against Foundation's JSONSerialization."
    )

    @Option(help: "Timed parses per body.")
    var iterations = 2_000

    func run() throws {
        var bodies: [(String, [UInt8])] = [
            ("55-byte object", Array(#"{"instances":[[12,73.36,2,1]],"signature_name":"serve"}"#.utf8))
        ]
        var tensor = #"{"inputs":[{"name":"x","shape":[16,32],"datatype":"FP32","data":["#
        for i in 0..<512 { tensor += (i == 0 ? "" : ",") + String(format: "%.6f", Double(i % 97) / 7.3) }
        tensor += "]}]}"
        bodies.append(("\(tensor.utf8.count)-byte tensor", Array(tensor.utf8)))
        for (name, bytes) in bodies {
            let ours = Self.median(iterations) { _ = try? bytes.withUnsafeBytes { try JSONParser.parse($0) } }
            let data = Data(bytes)
            let foundation = Self.median(iterations) { _ = try? JSONSerialization.jsonObject(with: data) }
            print(
                String(
                    format: "%@: switchyard %.2f us, JSONSerialization %.2f us (%.1fx)",
                    name,
                    ours,
                    foundation,
                    foundation / ours
                )
            )
        }
    }

    static func median(_ n: Int, _ body: () -> Void) -> Double {
        for _ in 0..<min(n, 50) { body() }
        var samples: [Double] = []
        samples.reserveCapacity(n)
        for _ in 0..<n {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
        }
        samples.sort()
        return samples[samples.count / 2]
    }
}

struct BenchCompareText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare-text",
        abstract: "Median microseconds of one LLM text comparison (parsing both JSON chat answers included)."
    )

    @Option(help: "Bytes of text in each answer.")
    var bytes = 4096

    @Option(help: "Timed comparisons.")
    var iterations = 2_000

    @Flag(
        help: "Put accented letters in the texts (normalization then goes through Foundation's NFC and case folding)."
    )
    var nonASCII = false

    func run() throws {
        guard bytes > 0, iterations > 0 else { throw ValidationError("--bytes and --iterations must be positive") }
        let words = [
            "the", "model", "answers", "with", "a", "short", "sentence", nonASCII ? "àbout" : "about", "routing",
            "traffic",
        ]
        var text = ""
        var index = 0
        while text.utf8.count < bytes {
            text += (text.isEmpty ? "" : " ") + words[index % words.count] + (index % 13 == 12 ? "." : "")
            index += 1
        }
        // The shadow's text differs in a few words spread over the answer.
        var shadowWords = text.split(separator: " ").map(String.init)
        for position in stride(from: 7, to: shadowWords.count, by: max(1, shadowWords.count / 5)) {
            shadowWords[position] = "different"
        }
        let live = Self.chatAnswer(text)
        let shadow = Self.chatAnswer(shadowWords.joined(separator: " "))
        let liveSide = ResponseSide(version: "v1", status: 200, body: live, latencyMilliseconds: 1)
        let shadowSide = ResponseSide(version: "v2", status: 200, body: shadow, latencyMilliseconds: 1)
        var outcome = ""
        let microseconds = BenchJSON.median(iterations) {
            outcome = compareLLM(live: liveSide, shadow: shadowSide, similarityThreshold: 0.8).outcome.rawValue
        }
        let similarity = compareLLM(live: liveSide, shadow: shadowSide, similarityThreshold: 0.8).text?.similarity ?? 0
        print(
            String(
                format: "compare-text: %d-byte texts, %d-byte bodies: median %.1f us (outcome %@, similarity %.4f)",
                text.utf8.count,
                live.count,
                microseconds,
                outcome,
                similarity
            )
        )
    }

    private static func chatAnswer(_ text: String) -> [UInt8] {
        let answer: JSON = [
            "id": "chatcmpl-1", "object": "chat.completion", "model": "bench",
            "choices": [
                ["index": 0, "message": ["role": "assistant", "content": .string(text)], "finish_reason": "stop"]
            ],
            "usage": ["prompt_tokens": 20, "completion_tokens": 900],
        ]
        return answer.serialized()
    }
}

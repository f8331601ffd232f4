import Compare
import EventHTTP
import HTTP1
import Models
import Policy

/// The `openai` route's side of the request path (SPEC §14): the body a version is sent (its
/// `model_name:` in place of the client's `model`; a shadow copy never streams), and the time
/// to first token and token usage read from the answers as they pass.
extension Worker {
    /// The request body for an `openai` version: the client's body with `model` rewritten to
    /// the version's `model_name:`, and for a shadow copy `"stream": false` without
    /// `stream_options`. Nil: the client's bytes go as they are (nothing to change). Every member
    /// the rewrite does not touch keeps its bytes. Throws a 400 when the body must be changed and
    /// is not a JSON object.
    static func llmRequestBody(
        _ body: EventBuffer,
        modelName: String?,
        isShadow: Bool
    ) throws(ModelError) -> EventBuffer? {
        guard modelName != nil || isShadow else { return nil }
        var set: [(key: String, rawValue: [UInt8])] = []
        if let modelName { set.append((key: "model", rawValue: JSON.string(modelName).serialized())) }
        var remove: Set<String> = []
        if isShadow {
            set.append((key: "stream", rawValue: Array("false".utf8)))
            remove.insert("stream_options")
        }
        guard let edited = JSONEdit.editTopLevel(body.bytes, set: set, remove: remove) else {
            throw ModelError.badRequest("the request body is not a JSON object (an openai route rewrites its 'model')")
        }
        return EventBuffer(bytes: edited)
    }

    /// Counts the usage and the time to first token of an `openai` answer read whole (a live
    /// answer that was not streamed, or any shadow's): its first token came with all the rest.
    /// Returns the time to first token in milliseconds.
    @discardableResult
    func llmAnsweredWhole(
        _ exchange: Exchange,
        version: String,
        role: SidecarMetrics.Role,
        body: EventBuffer,
        startNanoseconds: UInt64
    ) -> Double {
        let elapsed = Monotonic.nanoseconds() &- startNanoseconds
        let handles = metricCache.llm(metrics, model: exchange.model, version: version, role: role)
        handles.firstToken.record(Double(elapsed) / 1e9)
        if let answer = LLMAnswer.parse(body.bytes) {
            if let prompt = answer.promptTokens, prompt > 0 { handles.promptTokens.increment(by: Int64(prompt)) }
            if let completion = answer.completionTokens, completion > 0 {
                handles.completionTokens.increment(by: Int64(completion))
            }
        }
        return Double(elapsed) / 1e6
    }
}

/// Watches a streamed `openai` answer as it is relayed (SPEC §14): records the time to its first
/// token when the event carrying it arrives, and at the end the usage its final event reported.
/// Keeps no text: a bounded scanner of the current event only. Loop thread only.
final class LLMStreamMeter {
    private var scanner = LLMStreamScanner()
    private let handles: MetricCache.LLMHandles
    private let startNanoseconds: UInt64
    /// Milliseconds from sending the request to the first token; nil until it came.
    private(set) var firstTokenMilliseconds: Double?

    init(handles: MetricCache.LLMHandles, startNanoseconds: UInt64) {
        self.handles = handles
        self.startNanoseconds = startNanoseconds
    }

    func feed(_ bytes: EventBuffer) {
        if bytes.withUnsafeReadableBytes({ scanner.feed($0) }) { firstToken() }
    }

    private func firstToken() {
        let elapsed = Monotonic.nanoseconds() &- startNanoseconds
        handles.firstToken.record(Double(elapsed) / 1e9)
        firstTokenMilliseconds = Double(elapsed) / 1e6
    }

    /// The stream ended (whole or cut): reads a last event that had no blank line after it, then
    /// counts what the usage event said, if it came.
    func finish() {
        if scanner.finish() { firstToken() }
        if let prompt = scanner.promptTokens, prompt > 0 { handles.promptTokens.increment(by: Int64(prompt)) }
        if let completion = scanner.completionTokens, completion > 0 {
            handles.completionTokens.increment(by: Int64(completion))
        }
    }
}

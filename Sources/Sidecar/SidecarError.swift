import Models

/// An error the sidecar answers itself (SPEC §8): a status, a stable code and a detail,
/// rendered as `{"error": "<code>", "detail": "...", "request_id": "..."}`.
struct SidecarError: Error, Sendable {
    var status: Int
    var code: String
    var detail: String

    static func noRoute(_ method: String, _ path: Substring) -> SidecarError {
        SidecarError(status: 404, code: "no_route", detail: "no route matches \(method) \(path)")
    }
    static func unknownVersion(model: String, name: String) -> SidecarError {
        SidecarError(status: 404, code: "unknown_version", detail: "model '\(model)' has no version or label '\(name)'")
    }
    static func guardOpen(model: String, version: String) -> SidecarError {
        SidecarError(
            status: 503,
            code: "guard_open",
            detail: "version '\(version)' of model '\(model)' is held back by its guard"
        )
    }
    static func connectFailed(_ version: String, _ why: String) -> SidecarError {
        SidecarError(status: 502, code: "upstream_connect_failed", detail: "version '\(version)': \(why)")
    }
    static func badResponse(_ version: String, _ why: String) -> SidecarError {
        SidecarError(status: 502, code: "upstream_bad_response", detail: "version '\(version)': \(why)")
    }
    static func tlsFailed(_ version: String, _ why: String) -> SidecarError {
        SidecarError(status: 502, code: "upstream_tls_failed", detail: "version '\(version)': \(why)")
    }
    static func timeout(_ version: String, _ ms: Int) -> SidecarError {
        SidecarError(
            status: 504,
            code: "upstream_timeout",
            detail: "version '\(version)' did not answer within \(ms) ms"
        )
    }
    static func overloaded(_ version: String) -> SidecarError {
        SidecarError(
            status: 503,
            code: "overloaded",
            detail: "version '\(version)': too many requests waiting for a connection"
        )
    }
    static let draining = SidecarError(status: 503, code: "draining", detail: "the sidecar is shutting down")

    init(status: Int, code: String, detail: String) {
        self.status = status
        self.code = code
        self.detail = detail
    }

    init(_ error: ModelError) {
        self.init(status: error.status, code: error.code.rawValue, detail: error.detail)
    }

    func body(requestID: String) -> [UInt8] {
        JSON.error(code, detail, requestID: requestID).serialized()
    }
}

import HTTP1
import Models

/// An error the sidecar answers itself (SPEC §8): a status, a stable code and a detail,
/// rendered as `{"error": "<code>", "detail": "...", "request_id": "..."}`.
struct SidecarError: Error, Sendable {
    var status: Int
    var code: String
    var detail: String
    /// The gRPC status when the code alone does not say it (a framing error); see `grpcStatus`.
    var grpcOverride: GRPCStatus?

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

    init(status: Int, code: String, detail: String, grpc: GRPCStatus? = nil) {
        self.status = status
        self.code = code
        self.detail = detail
        self.grpcOverride = grpc
    }

    /// The status a gRPC call gets for this error (SPEC §13), `detail` going in `grpc-message`.
    var grpcStatus: GRPCStatus {
        if let grpcOverride { return grpcOverride }
        switch code {
        case "bad_request": return .invalidArgument
        case "no_route", "unknown_version", "no_prediction": return .notFound
        case "upstream_timeout": return .deadlineExceeded
        case "body_too_large": return .resourceExhausted
        case "upstream_connect_failed", "upstream_tls_failed", "guard_open", "overloaded", "draining":
            return .unavailable
        case "upstream_bad_response", "model_error": return .internal
        default: return SidecarError.grpcStatus(httpStatus: status)
        }
    }

    /// The gRPC status of an HTTP status that carries no sidecar code (a REST backend's own 4xx
    /// or 5xx on a gRPC route): what the status means, not gRPC's transport mapping.
    static func grpcStatus(httpStatus: Int) -> GRPCStatus {
        switch httpStatus {
        case 200..<300: return .ok
        case 400, 422: return .invalidArgument
        case 401: return .unauthenticated
        case 403: return .permissionDenied
        case 404: return .notFound
        case 408, 504: return .deadlineExceeded
        case 409: return .aborted
        case 413, 429: return .resourceExhausted
        case 501: return .unimplemented
        case 502, 503: return .unavailable
        case 500..<600: return .internal
        default: return .unknown
        }
    }

    init(_ error: ModelError) {
        self.init(status: error.status, code: error.code.rawValue, detail: error.detail)
    }

    func body(requestID: String) -> [UInt8] {
        JSON.error(code, detail, requestID: requestID).serialized()
    }
}

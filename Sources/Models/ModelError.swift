/// A prediction request an embedded model or codec could not answer; becomes a JSON error.
public struct ModelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The error code on the wire; each has one HTTP status.
    public enum Code: String, Sendable, Hashable {
        /// The request does not have the shape or types the model needs (400).
        case badRequest = "bad_request"
        /// A prediction table has no row for the key (404); `fallback` can catch it.
        case noPrediction = "no_prediction"
        /// The model itself failed (500).
        case modelError = "model_error"
    }

    public var code: Code
    /// What was found and what was expected, e.g. `expected 4 features per instance, got 3`.
    public var detail: String

    public init(code: Code, detail: String) {
        self.code = code
        self.detail = detail
    }

    /// 400, 404 or 500.
    public var status: Int {
        switch code {
        case .badRequest: 400
        case .noPrediction: 404
        case .modelError: 500
        }
    }

    public static func badRequest(_ detail: String) -> ModelError { ModelError(code: .badRequest, detail: detail) }
    public static func noPrediction(_ detail: String) -> ModelError { ModelError(code: .noPrediction, detail: detail) }
    public static func modelError(_ detail: String) -> ModelError { ModelError(code: .modelError, detail: detail) }

    public var description: String { "\(code.rawValue): \(detail)" }
}

/// A model file that cannot be served; the message is fit for a `validate` diagnostic.
public struct ModelLoadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file as given to the loader.
    public var path: String
    /// e.g. `linear model: 'coef' has 4 entries but 'feature_names' has 3`.
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    /// `path: message`.
    public var description: String { "\(path): \(message)" }
}

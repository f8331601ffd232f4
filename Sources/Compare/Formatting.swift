import Foundation

/// Number formats shared by the renderers.
enum Format {
    /// `value` rounded to `digits` significant digits (for the JSON report, so that its numbers
    /// read well and compare exactly in tests).
    static func significant(_ value: Double, _ digits: Int = 6) -> Double {
        guard value.isFinite, value != 0 else { return value }
        return Double(String(format: "%.\(digits)g", value)) ?? value
    }

    /// `99.10%`.
    static func percent(_ rate: Double?) -> String {
        guard let rate else { return "n/a" }
        return String(format: "%.2f%%", rate * 100)
    }

    /// `+1.25%`, `-0.40%`, `0.00%`.
    static func signedPercent(_ rate: Double) -> String {
        let text = percent(rate)
        return text.hasPrefix("-") || text == "0.00%" ? (text == "-0.00%" ? "0.00%" : text) : "+" + text
    }

    /// `[98.30%, 99.52%]`.
    static func interval(_ proportion: Proportion?) -> String {
        guard let proportion else { return "n/a" }
        return "[" + percent(proportion.low) + ", " + percent(proportion.high) + "]"
    }

    /// An absolute difference with three significant digits: `0`, `0.0123`, `0.000793`, `1.23e-06`.
    static func difference(_ value: Double?) -> String {
        guard let value else { return "n/a" }
        if value == 0 { return "0" }
        return String(format: "%.3g", value)
    }

    /// A similarity with three decimals: `0.873`.
    static func similarity(_ value: Double?) -> String {
        guard let value else { return "n/a" }
        return String(format: "%.3f", value)
    }

    /// Milliseconds with about three significant digits: `0.052`, `4.21`, `38.4`, `1250`.
    static func milliseconds(_ value: Double?) -> String {
        guard let value else { return "n/a" }
        if value == 0 { return "0" }
        let magnitude = abs(value)
        let text: String
        if magnitude >= 100 {
            text = String(format: "%.0f", value)
        } else if magnitude >= 10 {
            text = String(format: "%.1f", value)
        } else if magnitude >= 1 {
            text = String(format: "%.2f", value)
        } else {
            text = String(format: "%.3f", value)
        }
        return text == "-0" || text == "-0.0" || text == "-0.00" || text == "-0.000" ? String(text.dropFirst()) : text
    }

    /// A signed millisecond delta: `+1.20`, `-0.350`.
    static func delta(_ value: Double?) -> String {
        guard let value else { return "n/a" }
        let text = milliseconds(value)
        return text.hasPrefix("-") || text == "0" ? text : "+" + text
    }

    /// A gate value: the shortest text (4 significant digits or more) that is on the same side
    /// of `threshold` as `value`, so a message never reads `0.995 < 0.995`.
    static func gateValue(_ value: Double, against threshold: Double) -> String {
        for digits in 4...17 {
            let text = String(format: "%.\(digits)g", value)
            guard let shown = Double(text) else { break }
            if (shown < threshold) == (value < threshold) && (shown > threshold) == (value > threshold)
                && (shown == threshold) == (value == threshold)
            {
                return text
            }
        }
        return "\(value)"
    }
}

/// A YAML document as a tree of nodes, each with the position it starts at.
///
/// Scalars are kept as text: resolving them to booleans, numbers or null is the caller's job
/// (the `Policy` loader applies the YAML 1.2 core schema), because only the caller knows what
/// a key expects. Mappings keep their key/value pairs in file order, duplicates included, so
/// that a checker can report them.

/// A position in a YAML file. Lines and columns count from 1; line 0 means the whole file.
public struct YAMLMark: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// A scalar's text, how it was written, and its tag if the file gave one.
public struct YAMLScalar: Sendable, Hashable {
    public enum Style: Sendable, Hashable {
        /// Written without quotes: subject to schema resolution (`true`, `12`, `null`...).
        case plain
        case singleQuoted
        case doubleQuoted
        /// `|` block.
        case literal
        /// `>` block.
        case folded
    }

    public var text: String
    public var style: Style
    /// The resolved explicit tag (`tag:yaml.org,2002:str` for `!!str`), nil when none was written.
    public var tag: String?

    public init(text: String, style: Style, tag: String? = nil) {
        self.text = text
        self.style = style
        self.tag = tag
    }

    /// True when the scalar was written without quotes or block indicator.
    public var isPlain: Bool { style == .plain }
}

/// One key/value pair of a mapping, in file order.
public struct YAMLPair: Sendable {
    public var key: YAMLNode
    public var value: YAMLNode

    public init(key: YAMLNode, value: YAMLNode) {
        self.key = key
        self.value = value
    }
}

/// A node of the tree: a scalar, a sequence or a mapping, with the mark where it starts.
public struct YAMLNode: Sendable {
    public indirect enum Kind: Sendable {
        case scalar(YAMLScalar)
        case sequence([YAMLNode])
        case mapping([YAMLPair])
    }

    public var kind: Kind
    public var mark: YAMLMark

    public init(_ kind: Kind, mark: YAMLMark) {
        self.kind = kind
        self.mark = mark
    }

    public var scalar: YAMLScalar? {
        if case .scalar(let s) = kind { return s }
        return nil
    }

    public var sequence: [YAMLNode]? {
        if case .sequence(let items) = kind { return items }
        return nil
    }

    public var mapping: [YAMLPair]? {
        if case .mapping(let pairs) = kind { return pairs }
        return nil
    }
}

/// A problem found while reading YAML: a syntax error, a refused feature, or a limit.
public struct YAMLError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where; line 0 when the problem is the whole file (its size).
    public var mark: YAMLMark
    public var message: String

    public init(mark: YAMLMark, message: String) {
        self.mark = mark
        self.message = message
    }

    public var description: String { "\(mark): \(message)" }
}

/// Limits applied while parsing (SPEC §9 "Config limits").
public struct YAMLLimits: Sendable, Hashable {
    /// Largest accepted input, in bytes. Default 1 MiB.
    public var maxBytes: Int
    /// Deepest accepted nesting of sequences and mappings; the root collection is level 1.
    /// Default 64.
    public var maxDepth: Int
    /// Errors reported before giving up on a file (a billion-laughs file has hundreds of
    /// aliases). Default 50.
    public var maxErrors: Int

    public init(maxBytes: Int = 1 << 20, maxDepth: Int = 64, maxErrors: Int = 50) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        self.maxErrors = maxErrors
    }
}

/// The outcome of parsing one file: the root node (nil for an empty stream) and every error.
///
/// When `errors` is not empty the tree may be partial (refused aliases become null scalars)
/// and should only be used for best-effort messages.
public struct YAMLDocument: Sendable {
    public var root: YAMLNode?
    public var errors: [YAMLError]

    public init(root: YAMLNode?, errors: [YAMLError]) {
        self.root = root
        self.errors = errors
    }
}

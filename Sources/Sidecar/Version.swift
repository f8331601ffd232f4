import EventHTTP
import YAMLSource

/// What `switchyard version` prints.
public enum SwitchyardVersion {
    public static let current = "0.1.0"
    public static var libevent: String { libeventVersion }
    public static var libyaml: String { libyamlVersion }
}

internal import CYAML

/// The libyaml version linked at run time, e.g. `0.2.5`.
public let libyamlVersion: String = String(cString: yaml_get_version_string())

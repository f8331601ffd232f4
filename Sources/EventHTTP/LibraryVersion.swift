internal import CLibevent

/// The libevent version linked at run time, e.g. `2.1.12-stable`.
public let libeventVersion: String = String(cString: event_get_version())

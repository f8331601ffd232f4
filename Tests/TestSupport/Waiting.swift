import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A test's own failure with a message (a helper that could not set something up, an answer
/// that never came).
public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` every `interval` seconds until it holds or `seconds` pass, and says whether
/// it held. Tests wait on the event they need (a metric, a log line, a file, a socket state)
/// this way instead of sleeping a margin that a loaded machine can overrun; the deadline is
/// generous because it only costs time when the test is failing anyway.
@discardableResult
public func eventually(
    within seconds: Double = 10,
    every interval: Double = 0.01,
    _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: interval)  // a poll interval, not a margin
    }
    return try condition()
}

/// Polls `produce` until it returns a value (or `seconds` pass, then nil): for waits whose
/// result the test goes on to check, such as the first answer that shows a reload.
public func polled<T>(
    within seconds: Double = 10,
    every interval: Double = 0.01,
    _ produce: () throws -> T?
) rethrows -> T? {
    var value: T?
    try eventually(within: seconds, every: interval) {
        value = try produce()
        return value != nil
    }
    return value
}

/// The first index of `needle` in `haystack` at or after `from`.
public func find(_ needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Int? {
    guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
    var i = from
    while i + needle.count <= haystack.count {
        if haystack[i] == needle[0] && haystack[i..<i + needle.count].elementsEqual(needle) { return i }
        i += 1
    }
    return nil
}

/// Runs `executable` with `arguments` to its end: the exit status (-1 when it cannot start) and
/// standard output and standard error together.
public func runProcess(_ executable: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

import EventHTTP
import Foundation
import HTTP1
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Accept failures pause the listener with a growing pause instead of retrying at once (issue
/// 10). A reserve as large as the open-file limit puts every accepted descriptor inside it, so
/// each accept is a failure without exhausting the test process's descriptors.
@Suite struct AcceptFailureTests {
    final class Recorder: @unchecked Sendable {
        var failures: [(AcceptFailure, Bool)] = []
        var episodes: [AcceptEpisode] = []
    }

    static func start(_ loop: LoopThread, recorder: Recorder) throws -> Box<HTTPServer> {
        try loop.make {
            let server = try HTTPServer(
                loop: loop.loop,
                host: "127.0.0.1",
                port: 0,
                options: ServerOptions(reservedDescriptors: 1 << 30)
            ) { _, writer in writer.respond(status: 200) }
            server.onAcceptFailure = { failure, startsEpisode in recorder.failures.append((failure, startsEpisode)) }
            server.onAcceptResumed = { episode in recorder.episodes.append(episode) }
            return server
        }
    }

    @Test func connectionsInsideTheReserveAreClosedAndAcceptingBacksOff() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let recorder = Recorder()
        let server = try Self.start(loop, recorder: recorder)
        // 40 clients wait in the backlog. Accepting at full speed would take (and close) them
        // all at once; pausing 10, 20, 40... ms after each takes about 7 in 1.3 s.
        let clients = try (0..<40).map { _ in try RawClient(port: server.value.port, receiveTimeoutMilliseconds: 3000) }
        // The first is closed without a byte: there is no idle connection to make room.
        #expect(clients[0].readUntilClose().isEmpty)
        usleep(1_300_000)  // the scenario: a window in which the backoff's accepts are counted
        let failures = try loop.sync { recorder.failures }
        #expect(failures.count >= 3 && failures.count <= 12, "\(failures.count) failed accepts in 1.3 s")
        #expect(failures.allSatisfy { $0.0 == .descriptorReserve })
        #expect(failures.map(\.1) == [true] + Array(repeating: false, count: max(0, failures.count - 1)))
        #expect(try loop.sync { server.value.openConnections } == 0)
        #expect(try loop.sync { recorder.episodes.isEmpty })
    }

    @Test func anEpisodeEndsAfterAQuietSecond() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let recorder = Recorder()
        let server = try Self.start(loop, recorder: recorder)
        let client = try RawClient(port: server.value.port)
        #expect(client.readUntilClose().isEmpty)
        #expect(try loop.eventually(timeoutMilliseconds: 3000) { !recorder.episodes.isEmpty })
        let episode = try #require(try loop.sync { recorder.episodes.first })
        #expect(episode.failures == 1)
        #expect(episode.closedIdleConnections == 0)
        #expect(episode.milliseconds >= Int64(HTTPServer.acceptQuietMilliseconds))
        // Accepting again: the next failure starts a new episode.
        let next = try RawClient(port: server.value.port)
        #expect(next.readUntilClose().isEmpty)
        #expect(try loop.sync { recorder.failures.map(\.1) } == [true, true])
    }
}

import Dispatch
import EventHTTP
import Foundation
import HTTP1
import Testing

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// An upstream built on `HTTPServer` that answers after `delayMilliseconds` with `METHOD target body`.
private func echoUpstream(
    _ loop: LoopThread,
    delayMilliseconds: Int = 0,
    maxActive: Box<Int> = Box(0)
) throws -> Box<
    HTTPServer
> {
    let server = Box<HTTPServer?>(nil)
    let made = try loop.make {
        try HTTPServer(loop: loop.loop, host: "127.0.0.1", port: 0) { request, writer in
            maxActive.value = max(maxActive.value, server.value?.activeRequests ?? 0)
            let text =
                "\(request.head.method) \(request.head.target) \(String(decoding: request.body.bytes, as: UTF8.self))"
            loop.loop.scheduleTimer(afterMilliseconds: delayMilliseconds) {
                writer.respond(status: 200, body: bytes(text))
            }
        }
    }
    server.value = made.value
    return made
}

private func makePool(
    _ loop: LoopThread,
    port: Int,
    maxConnections: Int = 8,
    maxQueued: Int = 16,
    limits: HTTPLimits = HTTPLimits(maxBodyBytes: 8 << 20)
) throws -> Box<UpstreamPool> {
    try loop.make {
        UpstreamPool(
            loop: loop.loop,
            host: "127.0.0.1",
            port: port,
            maxConnections: maxConnections,
            maxQueued: maxQueued,
            limits: limits
        )
    }
}

/// Sends `count` requests at once from the loop thread; waits for every completion.
private func sendConcurrently(
    _ pool: Box<UpstreamPool>,
    on loop: LoopThread,
    count: Int,
    timeoutMilliseconds: Int = 3000,
    queuedRightAfter: Box<Int> = Box(0)
) throws -> [Result<Outcome, UpstreamError>] {
    let results = Box<[Int: Result<Outcome, UpstreamError>]>([:])
    let done = DispatchSemaphore(value: 0)
    loop.loop.execute {
        for i in 0..<count {
            pool.value.send(UpstreamRequest(method: "GET", target: "/\(i)"), timeoutMilliseconds: timeoutMilliseconds) {
                result in
                results.value[i] = result.map {
                    Outcome(
                        status: $0.head.status,
                        body: String(decoding: $0.body.bytes, as: UTF8.self),
                        wasReadUntilClose: $0.wasReadUntilClose
                    )
                }
                if results.value.count == count { done.signal() }
            }
        }
        queuedRightAfter.value = pool.value.queuedRequests
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw TestFailure("completions missing") }
    return (0..<count).map { results.value[$0]! }
}

/// A caller's own exchange object (as the sidecar's `Exchange` is): records each answer's body
/// and hands the count to `next`, which may send again on it. Loop thread only.
private final class RecordingExchange: UpstreamExchange, @unchecked Sendable {
    private let next: (RecordingExchange, Int) -> Void
    private(set) var answers: [String] = []

    init(next: @escaping (RecordingExchange, Int) -> Void) {
        self.next = next
    }

    override func upstreamFinished(_ result: Result<UpstreamResponse, UpstreamError>) {
        switch result {
        case .success(let response): answers.append(String(decoding: response.body.bytes, as: UTF8.self))
        case .failure(let error): answers.append("failed: \(error)")
        }
        next(self, answers.count)
    }
}

@Suite struct UpstreamPoolTests {
    @Test func reusesOneConnectionForSequentialRequests() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try echoUpstream(loop)
        let pool = try makePool(loop, port: upstream.value.port)
        for i in 0..<5 {
            let result = try send(pool, on: loop) {
                UpstreamRequest(method: "POST", target: "/p\(i)", body: EventBuffer(bytes: bytes("body\(i)")))
            }
            #expect(try result.get().body == "POST /p\(i) body\(i)")
        }
        #expect(try loop.sync { upstream.value.connectionsAccepted } == 1)
        #expect(try loop.sync { (pool.value.connectionsOpened, pool.value.idleConnections) } == (1, 1))
    }

    @Test func aResponseBodyKeptByTheCallerOutlivesLaterResponses() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try echoUpstream(loop)
        let pool = try makePool(loop, port: upstream.value.port)
        // The connection reuses its response body buffer only once nothing else holds it: bodies the
        // caller keeps (even requests) must stay as they were while later responses arrive.
        let kept = Box<[EventBuffer]>([])
        for i in 0..<6 {
            let done = DispatchSemaphore(value: 0)
            loop.loop.execute {
                let request = UpstreamRequest(
                    method: "POST",
                    target: "/k\(i)",
                    body: EventBuffer(bytes: bytes("b\(i)"))
                )
                pool.value.send(request, timeoutMilliseconds: 2000) { result in
                    if i % 2 == 0, case .success(let response) = result { kept.value.append(response.body) }
                    done.signal()
                }
            }
            #expect(done.wait(timeout: .now() + 10) == .success)
        }
        let seen = try loop.sync { kept.value.map { String(decoding: $0.bytes, as: UTF8.self) } }
        #expect(seen == ["POST /k0 b0", "POST /k2 b2", "POST /k4 b4"])
        #expect(try loop.sync { pool.value.connectionsOpened } == 1)
    }

    @Test func aCallersExchangeCarriesASecondSendStartedFromItsResult() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let first = try echoUpstream(loop)
        let second = try echoUpstream(loop)
        let firstPool = try makePool(loop, port: first.value.port)
        let secondPool = try makePool(loop, port: second.value.port)
        // As the sidecar's fallback does: the caller's own exchange object sends again, to another
        // backend, from inside its first result; then once more on the first pool.
        let exchange = RecordingExchange { exchange, answers in
            switch answers {
            case 1:
                let request = UpstreamRequest(method: "POST", target: "/second", body: EventBuffer(bytes: bytes("two")))
                secondPool.value.send(request, timeoutMilliseconds: 2000, exchange: exchange)
            case 2:
                firstPool.value.send(
                    UpstreamRequest(method: "GET", target: "/third"),
                    timeoutMilliseconds: 2000,
                    exchange: exchange
                )
            default:
                break
            }
        }
        loop.loop.execute {
            let request = UpstreamRequest(method: "POST", target: "/first", body: EventBuffer(bytes: bytes("one")))
            firstPool.value.send(request, timeoutMilliseconds: 2000, exchange: exchange)
        }
        #expect(try loop.eventually { exchange.answers.count == 3 })
        #expect(try loop.sync { exchange.answers } == ["POST /first one", "POST /second two", "GET /third "])
        #expect(try loop.sync { (firstPool.value.connectionsOpened, secondPool.value.connectionsOpened) } == (1, 1))
    }

    @Test func writesItsOwnFramingAndHost() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try loop.make {
            try HTTPServer(loop: loop.loop, host: "127.0.0.1", port: 0) { request, writer in
                let seen = request.head.headers.fields.map { "\($0.name.lowercased())=\($0.value)" }.joined(
                    separator: ";"
                )
                writer.respond(
                    status: 201,
                    body: bytes(seen + "|" + String(decoding: request.body.bytes, as: UTF8.self))
                )
            }
        }
        let port = upstream.value.port
        let pool = try makePool(loop, port: port)
        let result = try send(pool, on: loop) {
            UpstreamRequest(
                method: "POST",
                target: "/x",
                headers: HTTPHeaders([
                    ("Host", "client.example"), ("Transfer-Encoding", "chunked"), ("Connection", "x-hop"),
                    ("x-hop", "1"), ("Content-Length", "99"), ("x-keep", "2"),
                ]),
                body: EventBuffer(bytes: bytes("abc"))
            )
        }
        let outcome = try result.get()
        #expect(outcome.status == 201)
        #expect(outcome.body == "host=127.0.0.1:\(port);x-keep=2;content-length=3|abc")
    }

    @Test func queuesBeyondMaxConnections() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let maxActive = Box(0)
        let upstream = try echoUpstream(loop, delayMilliseconds: 100, maxActive: maxActive)
        let pool = try makePool(loop, port: upstream.value.port, maxConnections: 2, maxQueued: 10)
        let queued = Box(0)
        let results = try sendConcurrently(pool, on: loop, count: 6, queuedRightAfter: queued)
        for (i, result) in results.enumerated() {
            #expect(try result.get().body == "GET /\(i) ")
        }
        #expect(queued.value == 4)
        #expect(try loop.sync { maxActive.value } == 2)
        #expect(try loop.sync { upstream.value.connectionsAccepted } == 2)
    }

    @Test func refusesWhenTheQueueIsFull() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try echoUpstream(loop, delayMilliseconds: 100)
        let pool = try makePool(loop, port: upstream.value.port, maxConnections: 1, maxQueued: 1)
        let results = try sendConcurrently(pool, on: loop, count: 3)
        #expect(try results[0].get().body == "GET /0 ")
        #expect(try results[1].get().body == "GET /1 ")
        #expect(throws: UpstreamError.overloaded) { try results[2].get() }
    }

    @Test func reportsAConnectFailure() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let closed = try echoUpstream(loop)
        let port = closed.value.port
        try loop.sync { closed.value.stopAccepting() }
        let pool = try makePool(loop, port: port)
        let result = try send(pool, on: loop)
        guard case .failure(.connectFailed(let message)) = result else {
            Issue.record("expected connectFailed, got \(result)")
            return
        }
        #expect(message.contains("127.0.0.1:\(port)"))
        #expect(try loop.eventually { pool.value.openConnections == 0 })
    }

    @Test func anUnresolvableNameFailsEachSendWithTheName() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        // RFC 6761: `.invalid` never resolves. That it is looked up again (and a name that comes
        // to resolve is then used) is `BackendAddressTests`' part, on a controllable clock.
        let pool = try loop.make {
            UpstreamPool(loop: loop.loop, host: "no-such-backend.invalid", port: 80)
        }
        for _ in 0..<2 {
            let result = try send(pool, on: loop)
            guard case .failure(.connectFailed(let message)) = result else {
                Issue.record("expected connectFailed, got \(result)")
                return
            }
            #expect(message == "cannot resolve backend host \"no-such-backend.invalid\"")
        }
        #expect(pool.value.openConnections == 0)
    }

    @Test func timesOutAndClosesTheConnection() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let silent = try loop.make { try HTTPServer(loop: loop.loop, host: "127.0.0.1", port: 0) { _, _ in } }
        let pool = try makePool(loop, port: silent.value.port)
        let started = Date()
        let result = try send(pool, on: loop, timeoutMilliseconds: 200)
        #expect(throws: UpstreamError.timeout) { try result.get() }
        #expect(Date().timeIntervalSince(started) < 1.5)
        #expect(try loop.eventually { pool.value.openConnections == 0 && silent.value.openConnections == 0 })
    }

    @Test(arguments: [
        ("garbage", "HELLO WORLD\r\n\r\n"),
        ("cut short", "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc"),
        ("declared over the limit", "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"),
        (
            "chunked over the limit",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n" + String(repeating: "x", count: 1000)
        ),
        ("read-until-close over the limit", "HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "x", count: 1000)),
        ("bad chunk", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
    ])
    func refusesABadResponse(name: String, answer: String) throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try RawUpstream { _, _ in (bytes(answer), true) }
        defer { upstream.stop() }
        let pool = try makePool(loop, port: upstream.port, limits: HTTPLimits(maxBodyBytes: 100))
        let result = try send(pool, on: loop)
        guard case .failure(.badResponse(let detail)) = result else {
            Issue.record("\(name): expected badResponse, got \(result)")
            return
        }
        if name == "cut short" { #expect(detail == "upstream closed the connection mid-response") }
        if name.hasSuffix("over the limit") { #expect(detail.contains("limit of 100 bytes")) }
        #expect(try loop.eventually { pool.value.openConnections == 0 })
    }

    @Test func acceptsAResponseReadUntilClose() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try RawUpstream { _, _ in
            (bytes("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello"), true)
        }
        defer { upstream.stop() }
        let pool = try makePool(loop, port: upstream.port)
        let outcome = try send(pool, on: loop).get()
        #expect(outcome.body == "hello")
        #expect(outcome.wasReadUntilClose)
        #expect(try loop.eventually { pool.value.openConnections == 0 })
    }

    @Test func skipsInterimResponsesAndDecodesChunks() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try RawUpstream { _, _ in
            (
                bytes(
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                        + "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"
                ), false
            )
        }
        defer { upstream.stop() }
        let pool = try makePool(loop, port: upstream.port)
        for _ in 0..<2 {
            let outcome = try send(pool, on: loop).get()
            #expect(outcome.body == "hello!")
            #expect(!outcome.wasReadUntilClose)
        }
        #expect(upstream.connectionsAccepted == 1)
    }

    @Test func doesNotReuseAConnectionTheBackendCloses() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try RawUpstream { _, _ in
            (bytes("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"), false)
        }
        defer { upstream.stop() }
        let pool = try makePool(loop, port: upstream.port)
        for _ in 0..<2 { #expect(try send(pool, on: loop).get().body == "ok") }
        #expect(upstream.connectionsAccepted == 2)
    }

    @Test func retriesOnceWhenAReusedConnectionWasStale() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        // Connection 0 answers its first request, then closes on the second without a byte, as a
        // backend whose keep-alive timer fired would. Connection 1 answers.
        let upstream = try RawUpstream { connection, request in
            if connection == 0 && request == 1 { return nil }
            return (bytes("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nc\(connection)r"), false)
        }
        defer { upstream.stop() }
        let pool = try makePool(loop, port: upstream.port)
        #expect(try send(pool, on: loop).get().body == "c0r")
        #expect(try send(pool, on: loop).get().body == "c1r")
        #expect(upstream.connectionsAccepted == 2)
    }

    @Test func doesNotRetryAFreshConnection() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try RawUpstream { _, _ in nil }
        defer { upstream.stop() }
        let pool = try makePool(loop, port: upstream.port)
        let result = try send(pool, on: loop)
        #expect(throws: UpstreamError.badResponse("upstream closed the connection without responding")) {
            try result.get()
        }
        #expect(upstream.connectionsAccepted == 1)
    }

    @Test func failsLaterSendsOnceClosed() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try echoUpstream(loop)
        let pool = try makePool(loop, port: upstream.value.port)
        #expect(try send(pool, on: loop).get().status == 200)
        try loop.sync { pool.value.close() }
        #expect(throws: UpstreamError.closed) { try send(pool, on: loop).get() }
        #expect(try loop.eventually { pool.value.openConnections == 0 && upstream.value.openConnections == 0 })
    }

    @Test func neverCompletesInsideSend() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let pool = try loop.make { UpstreamPool(loop: loop.loop, host: "no-such-host.invalid", port: 80) }
        let calledInside = try loop.sync {
            var returned = false
            var early = false
            pool.value.send(UpstreamRequest(method: "GET", target: "/"), timeoutMilliseconds: 100) { _ in
                early = !returned
            }
            returned = true
            return early
        }
        #expect(calledInside == false)
        let result = try send(pool, on: loop)
        guard case .failure(.connectFailed) = result else {
            Issue.record("expected connectFailed, got \(result)")
            return
        }
    }

    @Test func sendsAndReceivesLargeBodies() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try loop.make {
            try HTTPServer(
                loop: loop.loop,
                host: "127.0.0.1",
                port: 0,
                options: ServerOptions(limits: HTTPLimits(maxBodyBytes: 8 << 20))
            ) { request, writer in
                // Answers with the body twice: the response is larger than the request.
                let body = EventBuffer()
                body.append(contentsOf: request.body)
                body.append(contentsOf: request.body)
                writer.respond(status: 200, body: body)
            }
        }
        let pool = try makePool(loop, port: upstream.value.port)
        let payload = (0..<(3 << 20)).map { UInt8(97 + $0 % 26) }
        for _ in 0..<2 {
            let result = try send(
                pool,
                on: loop,
                {
                    UpstreamRequest(method: "POST", target: "/big", body: EventBuffer(bytes: payload))
                },
                timeoutMilliseconds: 5000
            )
            let outcome = try result.get()
            #expect(outcome.status == 200)
            #expect(outcome.body == String(decoding: payload + payload, as: UTF8.self))
        }
        #expect(try loop.sync { pool.value.connectionsOpened } == 1)
    }

    @Test func timesOutOnAReusedConnection() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let upstream = try loop.make {
            try HTTPServer(loop: loop.loop, host: "127.0.0.1", port: 0) { request, writer in
                if request.head.target == "/slow" { return }  // never answers
                writer.respond(status: 200, body: Array("ok".utf8))
            }
        }
        let pool = try makePool(loop, port: upstream.value.port)
        for _ in 0..<3 { #expect(try send(pool, on: loop, timeoutMilliseconds: 300).get().body == "ok") }
        let started = Date()
        let result = try send(
            pool,
            on: loop,
            { UpstreamRequest(method: "GET", target: "/slow") },
            timeoutMilliseconds: 300
        )
        let elapsed = Date().timeIntervalSince(started)
        #expect(throws: UpstreamError.timeout) { try result.get() }
        #expect(elapsed > 0.25 && elapsed < 1.5)
        #expect(try loop.eventually { pool.value.openConnections == 0 })
    }
}

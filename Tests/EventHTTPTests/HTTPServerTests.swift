import EventHTTP
import Foundation
import HTTP1
import Testing

/// Starts a server on 127.0.0.1:0 whose handler echoes `METHOD target body` (or runs `handler`).
private func startServer(
    _ loop: LoopThread,
    options: ServerOptions = ServerOptions(),
    calls: Box<Int> = Box(0),
    handler: ((ServerRequest, ResponseWriter) -> Void)? = nil
) throws -> Box<HTTPServer> {
    try loop.make {
        try HTTPServer(loop: loop.loop, host: "127.0.0.1", port: 0, options: options) { request, writer in
            calls.value += 1
            if let handler {
                handler(request, writer)
                return
            }
            let body = EventBuffer()
            body.append("\(request.head.method) \(request.head.target) ")
            body.append(contentsOf: request.body)
            writer.respond(status: 200, headers: HTTPHeaders([("content-type", "text/plain")]), body: body)
        }
    }
}

@Suite struct HTTPServerTests {
    /// Bytes received on `fd` and not yet read (peeked, without waiting).
    static func unreadBytes(_ fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_PEEK | MSG_DONTWAIT)) }
        return max(0, n)
    }

    @Test func answersGetAndPost() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let client = try RawClient(port: server.value.port)
        client.send("GET /ping?x=1 HTTP/1.1\r\nhost: a\r\n\r\n")
        let get = try client.readResponse()
        #expect(get.status == 200)
        #expect(get.text == "GET /ping?x=1 ")
        #expect(get.header("content-length") == "14")
        #expect(get.header("connection") == nil)
        client.send("POST /v1/models/m:predict HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\n{\"x\": [1]} ")
        let post = try client.readResponse()
        #expect(post.status == 200)
        #expect(post.text == "POST /v1/models/m:predict {\"x\": [1]} ")
    }

    @Test func reportsPeerAddress() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop) { request, writer in
            writer.respond(status: 200, body: Array("\(request.peerAddress) \(request.isPeerLoopback)".utf8))
        }
        let client = try RawClient(port: server.value.port)
        client.send("GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        #expect(try client.readResponse().text == "127.0.0.1 true")
    }

    @Test func keepsTheConnectionAliveBetweenRequests() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let client = try RawClient(port: server.value.port)
        for i in 0..<2 {
            client.send("GET /\(i) HTTP/1.1\r\nhost: a\r\n\r\n")
            #expect(try client.readResponse().text == "GET /\(i) ")
        }
        #expect(try loop.sync { server.value.openConnections } == 1)
        client.send("GET /last HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        let last = try client.readResponse()
        #expect(last.header("connection") == "close")
        #expect(client.isClosedByPeer())
        #expect(try loop.eventually { server.value.openConnections == 0 })
    }

    @Test func answersPipelinedRequestsInOrder() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        // The first request is answered last in time: responses must still come out in order.
        let server = try startServer(loop) { request, writer in
            let delay = request.head.target == "/1" ? 200 : 10
            loop.loop.scheduleTimer(afterMilliseconds: delay) {
                writer.respond(status: 200, body: Array(request.head.target.utf8))
            }
        }
        let client = try RawClient(port: server.value.port)
        client.send((1...3).map { "GET /\($0) HTTP/1.1\r\nhost: a\r\n\r\n" }.joined())
        for i in 1...3 {
            #expect(try client.readResponse().text == "/\(i)")
        }
    }

    @Test func aBodyAndWriterKeptByTheHandlerOutliveLaterRequests() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        // The connection reuses a request's body buffer and writer only once nothing else holds them:
        // what a handler keeps must stay as it was while later requests (odd ones not kept) go by.
        let kept = Box<[(body: EventBuffer, writer: ResponseWriter)]>([])
        let server = try startServer(loop) { request, writer in
            writer.respond(status: 200, body: request.body.bytes)
            if request.head.target.hasSuffix("0") { kept.value.append((request.body, writer)) }
        }
        let client = try RawClient(port: server.value.port)
        for i in 0..<6 {
            let body = "body-\(i)-" + String(repeating: "x", count: i * 7)
            let tail = i % 2 == 0 ? "0" : "1"
            client.send("POST /\(i)/\(tail) HTTP/1.1\r\nhost: a\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(try client.readResponse().text == body)
        }
        let seen = try loop.sync { kept.value.map { (String(decoding: $0.body.bytes, as: UTF8.self), $0.writer) } }
        #expect(seen.map(\.0) == [0, 2, 4].map { "body-\($0)-" + String(repeating: "x", count: $0 * 7) })
        #expect(Set(seen.map { ObjectIdentifier($0.1) }).count == 3)
        #expect(try loop.sync { kept.value.allSatisfy { $0.writer.hasResponded && !$0.writer.isConnectionAlive } })
    }

    @Test func manySynchronousPipelinedRequestsDoNotRecurse() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let client = try RawClient(port: server.value.port)
        client.send(String(repeating: "GET / HTTP/1.1\r\nhost: a\r\n\r\n", count: 2000))
        for _ in 0..<2000 {
            #expect(try client.readResponse().status == 200)
        }
    }

    @Test func decodesAChunkedBody() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let client = try RawClient(port: server.value.port)
        client.send("POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
        usleep(50_000)  // the scenario: a client pausing mid-chunk, so the body comes in two reads
        client.send("lo\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.text == "POST /c hello world")
    }

    @Test func sends100ContinueBeforeReadingTheBody() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let client = try RawClient(port: server.value.port)
        client.send("POST /e HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        client.send("abcde")
        let final = try client.readResponse()
        #expect(final.status == 200)
        #expect(final.text == "POST /e abcde")
    }

    @Test func refusesADeclaredOversizeBody() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let calls = Box(0)
        let server = try startServer(loop, options: ServerOptions(limits: HTTPLimits(maxBodyBytes: 1000)), calls: calls)
        let client = try RawClient(port: server.value.port)
        client.send("POST / HTTP/1.1\r\nhost: a\r\nx-request-id: abc-1\r\ncontent-length: 1001\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413)
        #expect(response.header("connection") == "close")
        #expect(response.header("content-type") == "application/json")
        let json = jsonObject(response.body)
        #expect(json["error"] == "body_too_large")
        #expect(json["detail"]?.isEmpty == false)
        #expect(json["request_id"]?.count == 16)  // generated: the head was refused whole
        #expect(client.isClosedByPeer())
        #expect(try loop.sync { calls.value } == 0)
    }

    @Test func refusesAnOversizeChunkedBodyWithTheClientsRequestID() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let calls = Box(0)
        let server = try startServer(loop, options: ServerOptions(limits: HTTPLimits(maxBodyBytes: 10)), calls: calls)
        let client = try RawClient(port: server.value.port)
        client.send("POST / HTTP/1.1\r\nhost: a\r\nx-request-id: abc-1\r\ntransfer-encoding: chunked\r\n\r\nb\r\n")
        client.send("hello world\r\n0\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413)
        #expect(jsonObject(response.body)["request_id"] == "abc-1")
        #expect(try loop.sync { calls.value } == 0)
    }

    @Test(arguments: [
        ("content-length: 5\r\ntransfer-encoding: chunked\r\n", 400, "bad_request"),
        ("transfer-encoding: gzip\r\n", 501, "not_implemented"),
        ("content-length: 5\r\ncontent-length: 5\r\n", 400, "bad_request"),
        ("content-length: +5\r\n", 400, "bad_request"),
    ])
    func refusesSmugglingFraming(fields: String, status: Int, code: String) throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let calls = Box(0)
        let server = try startServer(loop, calls: calls)
        let client = try RawClient(port: server.value.port)
        client.send("POST / HTTP/1.1\r\nhost: a\r\n\(fields)\r\nhello GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == status)
        #expect(response.header("connection") == "close")
        #expect(jsonObject(response.body)["error"] == code)
        #expect(client.isClosedByPeer())
        #expect(try loop.sync { calls.value } == 0)
    }

    @Test func refusesTooManyHeaderBytes() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop, options: ServerOptions(limits: HTTPLimits(maxHeaderBytes: 1024)))
        let client = try RawClient(port: server.value.port)
        client.send("GET / HTTP/1.1\r\nhost: a\r\nx-big: \(String(repeating: "a", count: 2000))\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 431)
        #expect(jsonObject(response.body)["error"] == "headers_too_large")
        #expect(client.isClosedByPeer())
    }

    @Test func cutsOffAClientThatSendsTheHeadSlowly() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let calls = Box(0)
        let server = try startServer(loop, options: ServerOptions(headerTimeoutMilliseconds: 500), calls: calls)
        let client = try RawClient(port: server.value.port)
        let started = Date()
        var sent = 0
        for byte in "GET / HTTP/1.1\r\nhost: a\r\n\r\n".utf8 {
            client.send([byte])
            sent += 1
            usleep(300_000)  // the scenario: a client sending a byte every 300 ms
            if Date().timeIntervalSince(started) > 0.9 { break }
        }
        let response = try client.readResponse()
        #expect(response.status == 408)
        #expect(jsonObject(response.body)["error"] == "request_timeout")
        #expect(response.header("connection") == "close")
        #expect(sent < 6)
        #expect(try loop.sync { calls.value } == 0)
    }

    @Test func cutsOffASlowBody() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop, options: ServerOptions(bodyTimeoutMilliseconds: 300))
        let client = try RawClient(port: server.value.port)
        client.send("POST / HTTP/1.1\r\nhost: a\r\nx-request-id: slow-7\r\ncontent-length: 10\r\n\r\nabc")
        let response = try client.readResponse()
        #expect(response.status == 408)
        #expect(jsonObject(response.body)["request_id"] == "slow-7")
    }

    @Test func closesASilentConnectionWithoutAnAnswer() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(
            loop,
            options: ServerOptions(headerTimeoutMilliseconds: 200, idleTimeoutMilliseconds: 300)
        )
        let client = try RawClient(port: server.value.port)
        client.send("GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        #expect(try client.readResponse().status == 200)
        let before = Date()
        #expect(client.isClosedByPeer())  // idle keep-alive: closed with no bytes
        #expect(Date().timeIntervalSince(before) > 0.2)
        #expect(try loop.eventually { server.value.openConnections == 0 })
    }

    @Test func freesAConnectionWhoseClientLeavesMidBody() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let calls = Box(0)
        let server = try startServer(loop, calls: calls)
        do {
            let client = try RawClient(port: server.value.port)
            client.send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n0123456789")
            #expect(try loop.eventually { server.value.openConnections == 1 })
        }
        #expect(try loop.eventually { server.value.openConnections == 0 })
        #expect(try loop.sync { calls.value } == 0)
    }

    @Test func dropsTheResponseOfAClientThatLeft() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let writer = Box<ResponseWriter?>(nil)
        let server = try startServer(loop) { _, w in writer.value = w }
        do {
            let client = try RawClient(port: server.value.port)
            client.send("GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            #expect(try loop.eventually { writer.value != nil && server.value.activeRequests == 1 })
        }
        // EOF while the handler works: the connection is freed at once and the late answer is dropped.
        #expect(try loop.eventually { server.value.openConnections == 0 && server.value.activeRequests == 0 })
        #expect(try loop.sync { writer.value!.isConnectionAlive } == false)
        try loop.sync { writer.value!.respond(status: 200, body: Array(repeating: 65, count: 100)) }
        #expect(try loop.sync { writer.value!.hasResponded && server.value.activeRequests == 0 })
    }

    @Test func answersHeadWithoutABody() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let client = try RawClient(port: server.value.port)
        client.send("HEAD /h HTTP/1.1\r\nhost: a\r\n\r\nGET /g HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        let raw = String(decoding: client.readUntilClose(), as: UTF8.self)
        // HEAD announces the length of "HEAD /h " but sends no body: the next response follows at once.
        #expect(raw.contains("content-length: 8\r\n\r\nHTTP/1.1 200 OK\r\n"))
        #expect(raw.hasSuffix("\r\n\r\nGET /g "))
    }

    @Test func drainsAfterInFlightRequests() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let writer = Box<ResponseWriter?>(nil)
        let drained = Box(false)
        let server = try startServer(loop) { _, w in writer.value = w }
        let idle = try RawClient(port: server.value.port)
        let busy = try RawClient(port: server.value.port)
        busy.send("GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        #expect(try loop.eventually { server.value.activeRequests == 1 && server.value.openConnections == 2 })
        try loop.sync { server.value.drain { drained.value = true } }
        #expect(idle.isClosedByPeer())
        #expect(try loop.sync { drained.value } == false)
        try loop.sync { writer.value!.respond(status: 200, body: Array("done".utf8)) }
        let response = try busy.readResponse()
        #expect(response.text == "done")
        #expect(response.header("connection") == "close")
        #expect(try loop.eventually { drained.value })
        #expect(throws: (any Error).self) { _ = try RawClient(port: server.value.port) }
    }

    @Test func loopsOnTwoThreadsShareOnePort() throws {
        let first = try LoopThread()
        let second = try LoopThread()
        defer {
            first.shutdown()
            second.shutdown()
        }
        let a = try first.make {
            try HTTPServer(loop: first.loop, host: "127.0.0.1", port: 0) { _, w in
                w.respond(status: 200, body: Array("a".utf8))
            }
        }
        let port = a.value.port
        let b = try second.make {
            try HTTPServer(loop: second.loop, host: "127.0.0.1", port: port) { _, w in
                w.respond(status: 200, body: Array("b".utf8))
            }
        }
        #expect(b.value.port == port)
        var seen = Set<String>()
        for _ in 0..<40 where seen.count < 2 {
            let client = try RawClient(port: port)
            client.send("GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            seen.insert(try client.readResponse().text)
        }
        #expect(seen == ["a", "b"])
    }

    @Test func closesAfterAnHTTP10ResponseUnlessAskedToKeepAlive() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop)
        let kept = try RawClient(port: server.value.port)
        kept.send("GET /k HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        let first = try kept.readResponse()
        #expect(first.header("connection") == "keep-alive")
        kept.send("GET /c HTTP/1.0\r\n\r\n")
        let second = try kept.readResponse()
        #expect(second.text == "GET /c ")
        #expect(second.header("connection") == "close")
        #expect(kept.isClosedByPeer())
    }

    @Test func answersCompleteRequestsBeforeAHalfCloseThenCloses() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let calls = Box(0)
        let server = try startServer(loop, calls: calls)
        let client = try RawClient(port: server.value.port)
        client.send("GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nho")
        client.shutdownWrite()
        let response = try client.readResponse()
        #expect(response.text == "GET /1 ")
        #expect(client.isClosedByPeer())
        #expect(try loop.sync { calls.value } == 1)
        #expect(try loop.eventually { server.value.openConnections == 0 })
    }

    @Test func sendsALargeResponseToAClientThatReadsLate() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let size = 4 << 20
        let server = try startServer(loop) { request, writer in
            let fill = UInt8(ascii: request.head.target == "/a" ? "a" : "b")
            writer.respond(status: 200, body: [UInt8](repeating: fill, count: size))
        }
        let client = try RawClient(port: server.value.port)
        // Two pipelined requests: the first answer fills the socket, the second waits behind it.
        client.send("GET /a HTTP/1.1\r\nhost: a\r\n\r\nGET /b HTTP/1.1\r\nhost: a\r\n\r\n")
        // Wait until the first answer is piling up unread in the client's socket.
        #expect(eventually { Self.unreadBytes(client.fd) >= 64 << 10 })
        let first = try client.readResponse()
        #expect(first.body.count == size && first.body.allSatisfy { $0 == UInt8(ascii: "a") })
        let second = try client.readResponse()
        #expect(second.body.count == size && second.body.allSatisfy { $0 == UInt8(ascii: "b") })
    }

    @Test func keepsABusyKeepAliveConnectionPastItsIdleTimeout() throws {
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let server = try startServer(loop, options: ServerOptions(idleTimeoutMilliseconds: 300))
        let client = try RawClient(port: server.value.port)
        // Requests every 150 ms for a second: the idle deadline moves on with each one.
        for i in 0..<7 {
            client.send("GET /\(i) HTTP/1.1\r\nhost: a\r\n\r\n")
            #expect(try client.readResponse().text == "GET /\(i) ")
            usleep(150_000)  // the scenario: a client busy every 150 ms, against a 300 ms idle timeout
        }
        #expect(try loop.sync { server.value.openConnections } == 1)
        let before = Date()
        #expect(client.isClosedByPeer())
        #expect(Date().timeIntervalSince(before) > 0.1)
    }
}

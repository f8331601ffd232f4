import HTTP1
import Testing

@Suite struct GRPCFramingTests {
    @Test(arguments: [
        ("1S", 1_000), ("100m", 100), ("5u", 1), ("1000u", 1), ("1001u", 2), ("2H", 7_200_000),
        ("3M", 180_000), ("0m", 0), ("999999n", 1), ("1000000n", 1), ("1000001n", 2), ("99999999S", 99_999_999_000),
    ])
    func parsesTimeouts(value: String, milliseconds: Int) {
        #expect(GRPCFraming.parseTimeout(value) == milliseconds)
    }

    @Test(arguments: ["", "S", "1", "1s", "1.5S", "-1S", "123456789S", " 1S", "1S ", "1h", "1x", "١S"])
    func refusesMalformedTimeouts(value: String) {
        #expect(GRPCFraming.parseTimeout(value) == nil)
    }

    @Test func rendersTimeoutsInTheFinestUnitThatFits() {
        #expect(GRPCFraming.timeoutValue(milliseconds: 250) == "250m")
        #expect(GRPCFraming.timeoutValue(milliseconds: 99_999_999) == "99999999m")
        #expect(GRPCFraming.timeoutValue(milliseconds: 100_000_000) == "100000S")
        #expect(GRPCFraming.timeoutValue(milliseconds: -5) == "0m")
        for value in [0, 1, 999, 1_000_000_000] {
            #expect(GRPCFraming.parseTimeout(GRPCFraming.timeoutValue(milliseconds: value)).map { $0 >= value } == true)
        }
    }

    @Test func framesAndSplitsMessages() throws {
        var body: [UInt8] = []
        GRPCFraming.appendMessage(Array("abc".utf8), to: &body)
        GRPCFraming.appendMessage([UInt8](), to: &body)
        GRPCFraming.appendMessage([UInt8](repeating: 7, count: 300), to: &body)
        #expect(Array(body.prefix(8)) == [0, 0, 0, 0, 3, 97, 98, 99])
        #expect(Array(body[13..<18]) == [0, 0, 0, 1, 44])
        let ranges = try body.withUnsafeBytes { try GRPCFraming.messages(in: $0).get() }
        #expect(ranges == [5..<8, 13..<13, 18..<318])
        let empty = [UInt8]().withUnsafeBytes { GRPCFraming.messages(in: $0) }
        #expect(empty == .success([]))
    }

    @Test func refusesBadBodies() {
        func split(_ bytes: [UInt8], limit: Int = 100, encoding: String? = nil) -> GRPCFramingError? {
            let result = bytes.withUnsafeBytes { GRPCFraming.messages(in: $0, maxMessageBytes: limit, encoding: encoding) }
            if case .failure(let error) = result { return error }
            return nil
        }
        #expect(split([0, 0, 0, 0, 101] + [UInt8](repeating: 0, count: 101)) == .messageTooLarge(declared: 101, limit: 100))
        #expect(split([0, 0, 0, 0, 101])?.status == .resourceExhausted)
        #expect(split([0, 0, 0]) == .malformed("gRPC body ends inside a message prefix"))
        #expect(split([0, 0, 0, 0, 4, 1])?.status == .internal)
        #expect(split([2, 0, 0, 0, 0])?.status == .internal)
        #expect(split([1, 0, 0, 0, 0])?.status == .internal)  // compressed, no grpc-encoding
        #expect(split([1, 0, 0, 0, 0], encoding: "identity")?.status == .internal)
        #expect(split([1, 0, 0, 0, 0], encoding: "gzip") == .unsupportedCompression("gzip"))
        #expect(split([1, 0, 0, 0, 0], encoding: "gzip")?.status == .unimplemented)
        #expect(split([0, 0, 0, 0, 0], encoding: "gzip") == nil)  // uncompressed is always allowed
    }

    @Test func percentEncodesGRPCMessages() {
        #expect(GRPCFraming.percentEncode("plain text: ok") == "plain text: ok")
        #expect(GRPCFraming.percentEncode("100%") == "100%25")
        #expect(GRPCFraming.percentEncode("a\nb") == "a%0Ab")
        #expect(GRPCFraming.percentEncode("ünï") == "%C3%BCn%C3%AF")
        for text in ["", "100% sure\r\n", "ünïcødé ✓", "%%41"] {
            #expect(GRPCFraming.percentDecode(GRPCFraming.percentEncode(text)) == text)
        }
        #expect(GRPCFraming.percentDecode("bad %zz and %4") == "bad %zz and %4")
    }

    @Test func buildsStatusTrailersAndTrailersOnlyHeaders() {
        let trailers = GRPCFraming.statusTrailers(.resourceExhausted, message: "too big: 5 MiB > 4 MiB")
        #expect(trailers.fields.map { "\($0.name)=\($0.value)" } == ["grpc-status=8", "grpc-message=too big: 5 MiB > 4 MiB"])
        #expect(GRPCFraming.statusTrailers(.ok).fields.map(\.name) == ["grpc-status"])
        let only = GRPCFraming.trailersOnlyHeaders(.notFound, message: "no model")
        #expect(only.first(name: "content-type") == "application/grpc")
        #expect(only.first(name: "grpc-status") == "5")
        #expect(GRPCStatus.fromHTTPStatus(503) == .unavailable)
        #expect(GRPCStatus.fromHTTPStatus(404) == .unimplemented)
    }

    @Test func recognisesGRPCContentTypes() {
        #expect(GRPCFraming.isGRPC(contentType: "application/grpc"))
        #expect(GRPCFraming.isGRPC(contentType: "application/grpc+proto"))
        #expect(GRPCFraming.isGRPC(contentType: "Application/GRPC;charset=utf-8"))
        #expect(!GRPCFraming.isGRPC(contentType: "application/grpc-web"))
        #expect(!GRPCFraming.isGRPC(contentType: "application/json"))
    }
}

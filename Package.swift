// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = []

let package = Package(
    name: "switchyard",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "switchyard", targets: ["switchyard"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries, each imported by exactly one wrapper target (see docs/ARCHITECTURE.md).
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent",
            providers: [.apt(["libevent-dev"])]
        ),
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // HTTP/2 framing for the data port (h2c, gRPC); imported only by EventHTTP.
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),

        .target(name: "HTTP1", swiftSettings: strict),
        .target(
            name: "EventHTTP",
            dependencies: ["CLibevent", "COpenSSL", "CNGHTTP2", "HTTP1"],
            swiftSettings: strict
        ),
        .target(name: "YAMLSource", dependencies: ["CYAML"], swiftSettings: strict),
        .target(name: "Policy", dependencies: ["YAMLSource"], swiftSettings: strict),
        .target(name: "Routing", dependencies: ["Policy"], swiftSettings: strict),
        .target(name: "Models", swiftSettings: strict),
        .target(name: "Compare", dependencies: ["Models"]),
        .target(
            name: "Sidecar",
            dependencies: [
                "EventHTTP", "HTTP1", "YAMLSource", "Policy", "Routing", "Models", "Compare",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "switchyard",
            dependencies: [
                "Sidecar", "EventHTTP", "Policy", "Routing", "Models", "Compare",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // Test PKI and a Python TLS server, shared by the test targets that talk TLS.
        .target(name: "TestTLSSupport", path: "Tests/TestTLSSupport"),

        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"]),
        .testTarget(name: "EventHTTPTests", dependencies: ["EventHTTP", "HTTP1", "TestTLSSupport"]),
        .testTarget(name: "YAMLSourceTests", dependencies: ["YAMLSource"]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RoutingTests", dependencies: ["Routing", "Policy"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models"]),
        .testTarget(name: "CompareTests", dependencies: ["Compare", "Models"]),
        .testTarget(
            name: "SidecarTests",
            dependencies: [
                "switchyard", "Sidecar", "EventHTTP", "HTTP1", "Policy", "Models", "Compare", "TestTLSSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CLITests", dependencies: ["switchyard", "TestTLSSupport"]),
    ]
)

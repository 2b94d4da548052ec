// swift-tools-version:6.1
import PackageDescription

// Layout, bottom to top:
//   C*                 system modules over the four C libraries (and eventfd); nothing above the
//                      wrapper modules imports them.
//   AMQPClient, PostgresClient, RedisClient, HTTPServer
//                      thin Swift owners of the C handles: typed errors, no C types in their API.
//   Contracts          the messages of INTERFACE.md as Codable types, codes and validation.
//   ServiceSupport     configuration, logging, metrics, signals, back-off shared by the processes.
//   InventoryRPCClient the one RPC client over AMQPClient (correlation, deadlines, returns, reconnect):
//                      the facade, the gateway, the benchmark and the fault suite call the core with it.
//   InventoryRPC       the core (library); `inventory-rpc` is its command line.
//   HTTPFacade         the REST facade (library); `http-facade` is its command line.
//   RealtimeGateway    the WebSocket gateway (library, Hummingbird); `realtime-gateway` is its command line.

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6)
]

let package = Package(
    name: "seat-inventory",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "inventory-rpc", targets: ["inventory-rpc"]),
        .executable(name: "http-facade", targets: ["http-facade"]),
        .executable(name: "realtime-gateway", targets: ["realtime-gateway"]),
        .executable(name: "inventory-bench", targets: ["inventory-bench"]),
        .executable(name: "inventory-faults", targets: ["inventory-faults"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The realtime gateway's WebSocket server (and, in its tests, client).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // SHA-1 (Redis script names) and SHA-256 (the idempotency request hash).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Bearer tokens at the facade (issue 12); needs swift-crypto 4.x.
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        // No pkgConfig: hiredis.pc carries -D_FILE_OFFSET_BITS=64, which SwiftPM warns about.
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .systemLibrary(name: "CEventFD"),

        // MARK: Swift owners of the C handles
        .target(
            name: "AMQPClient",
            dependencies: ["CRabbitMQ", "CEventFD", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PostgresClient",
            dependencies: ["CLibPQ", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "RedisClient",
            dependencies: [
                "CHiredis", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HTTPServer",
            dependencies: ["CMicroHTTPD", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),

        // MARK: The service
        .target(name: "Contracts", swiftSettings: swiftSettings),
        .target(
            name: "ServiceSupport",
            dependencies: [
                "Contracts",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InventoryRPCClient",
            dependencies: [
                "AMQPClient", "Contracts", "ServiceSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InventoryRPC",
            dependencies: [
                "Contracts", "AMQPClient", "PostgresClient", "RedisClient", "HTTPServer", "ServiceSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            // The schema (Storage/SQL/NNNN_*.sql) and the control claim, embedded in the binary (decision 0002).
            resources: [.embedInCode("Storage/SQL"), .embedInCode("Storage/Control")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HTTPFacade",
            dependencies: [
                "Contracts", "AMQPClient", "HTTPServer", "ServiceSupport", "InventoryRPCClient", "RedisClient",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "inventory-rpc",
            dependencies: [
                "InventoryRPC", "ServiceSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "http-facade",
            dependencies: [
                "HTTPFacade", "ServiceSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The realtime gateway: AMQP on its own threads, WebSockets on Hummingbird's event loops.
        .target(
            name: "RealtimeGateway",
            dependencies: [
                "Contracts", "AMQPClient", "ServiceSupport", "InventoryRPCClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                // The gate before the WebSocket upgrade handler speaks NIO's HTTP/1 parts (decision 0017).
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "realtime-gateway",
            dependencies: [
                "RealtimeGateway", "ServiceSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: The benchmark (issue 6): load generator, verifier, AMQP echo
        .target(
            name: "Bench",
            dependencies: [
                "Contracts", "AMQPClient", "PostgresClient", "InventoryRPC", "InventoryRPCClient",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "inventory-bench",
            dependencies: [
                "Bench", "AMQPClient", "Contracts", "HTTPFacade", "ServiceSupport",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: The fault suite (issue 7): workload clients, event drain, history checker (faults/run.sh drives it)
        .target(
            name: "FaultSuite",
            dependencies: [
                "Bench", "Contracts", "AMQPClient", "PostgresClient", "InventoryRPCClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "inventory-faults",
            dependencies: [
                "FaultSuite", "Contracts", "HTTPFacade",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        // The fixtures every test target shares (scratch vhosts and databases, a private redis-server,
        // child processes, raw HTTP and an RPC test client over InventoryRPCClient), as swift-nio's NIOTestUtils.
        .target(
            name: "TestSupport",
            dependencies: [
                "AMQPClient", "Contracts", "InventoryRPCClient", "PostgresClient", "RedisClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AMQPClientTests",
            dependencies: ["AMQPClient", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresClientTests",
            dependencies: ["PostgresClient", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RedisClientTests",
            dependencies: ["RedisClient", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HTTPServerTests",
            dependencies: ["HTTPServer", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "ContractsTests", dependencies: ["Contracts", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ServiceSupportTests",
            dependencies: ["ServiceSupport", "Contracts"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InventoryRPCClientTests",
            dependencies: [
                "InventoryRPCClient", "AMQPClient", "Contracts", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InventoryRPCTests",
            dependencies: ["InventoryRPC", "Contracts", "AMQPClient", "PostgresClient", "RedisClient", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BenchTests",
            dependencies: [
                "Bench", "Contracts", "AMQPClient", "PostgresClient", "InventoryRPC", "TestSupport", "HTTPFacade",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FaultSuiteTests",
            dependencies: ["FaultSuite", "Bench", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HTTPFacadeTests",
            dependencies: [
                "HTTPFacade", "Contracts", "AMQPClient", "TestSupport", "ServiceSupport", "RedisClient",
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RealtimeGatewayTests",
            dependencies: [
                "RealtimeGateway", "Contracts", "AMQPClient", "ServiceSupport", "TestSupport",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

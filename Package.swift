// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Trove",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "trove", targets: ["trove"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // System-library shims: module maps only.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        // Linux calls that need _GNU_SOURCE (direct I/O, write-back, huge pages, mincore), in C.
        .target(name: "CLinux"),

        // The FastCDC inner loop in C: the one hot loop that must not depend on the optimiser.
        .target(name: "CFastCDC", cSettings: [.unsafeFlags(["-O3"])]),
        // SHA-256 of 16 messages side by side on AVX-512 (chunk ids of a batch); OpenSSL otherwise.
        .target(name: "CSHA256", cSettings: [.unsafeFlags(["-O3"])]),
        // Ids, hashing, the chunker, object and pack codecs: pure values, no file I/O.
        .target(name: "TroveCore", dependencies: ["COpenSSL", "CZstd", "CFastCDC", "CSHA256"]),
        // The local store: packs, SQLite index, refs, stage and working tree, fsck, gc. No networking.
        .target(name: "TroveStore", dependencies: [
            "TroveCore", "CLinux",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        // The sync protocol's messages and pack stream: pure values and codecs, no I/O.
        .target(name: "TroveProtocol", dependencies: ["TroveCore"]),
        // Push, fetch, clone over a Remote: the serving side, path and stdio/SSH transports.
        .target(name: "TroveSync", dependencies: [
            "TroveCore", "TroveProtocol", "TroveStore",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // The daemon: projects, tokens and roles (files, or PostgreSQL for replicas), the sync protocol over HTTP(S), the JSON API, web UI and MLflow tracking, metrics.
        .target(name: "TroveServer", dependencies: [
            "TroveCore", "TroveProtocol", "TroveStore", "TroveSync", "TroveRuns",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
        ], resources: [
            // The web UI, compiled into the binary: the daemon serves it with no files beside it.
            .embedInCode("Web/index.html"), .embedInCode("Web/app.css"), .embedInCode("Web/app.js"),
        ]),
        // Git integration: libgit2 bridge, LFS pointers, the filter process, hook install, snapshots of git commits.
        .target(name: "TroveGit", dependencies: ["CGit2", "TroveCore", "TroveStore"]),
        // Runs: recording a command with its parameters, logs, metrics, outputs and code version.
        .target(name: "TroveRuns", dependencies: ["TroveCore", "TroveStore"]),
        // The command tree, output rendering (text, --json, progress) and errors → exit codes.
        .target(name: "TroveCLI", dependencies: [
            "TroveCore", "TroveStore", "TroveGit", "TroveProtocol", "TroveSync", "TroveServer", "TroveRuns",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // @main only.
        .executableTarget(name: "trove", dependencies: ["TroveCLI"]),
        // Test-only helpers: temp dirs, seeded data, running the built binary.
        .target(name: "TroveTestSupport", dependencies: ["TroveCore"], path: "Sources/TroveTestSupport"),

        .testTarget(name: "TroveCoreTests", dependencies: ["TroveCore", "TroveTestSupport"]),
        .testTarget(name: "TroveStoreTests", dependencies: ["TroveStore", "TroveTestSupport"]),
        .testTarget(name: "TroveSyncTests", dependencies: ["TroveSync", "TroveProtocol", "TroveStore", "TroveTestSupport",
                                                         .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "TroveRunsTests", dependencies: ["TroveRuns", "TroveCore", "TroveStore", "TroveTestSupport"]),
        .testTarget(name: "TroveGitTests", dependencies: ["TroveGit", "TroveCore", "TroveStore", "TroveTestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TroveTestSupport", "TroveCore", "TroveStore", "TroveRuns"]),
    ],
    swiftLanguageModes: [.v5]
)

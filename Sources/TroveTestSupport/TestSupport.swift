import Foundation
import TroveCore

/// A temporary folder removed on deinit.
public final class TempDir {
    public let path: String

    public init(_ label: String = "trove-test") {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        path = "\(base)/\(label)-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func sub(_ name: String) -> String {
        let p = path + "/" + name
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }
}

/// Deterministic bytes (SplitMix64) for tests.
public struct SeededBytes: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= count {
                buf.storeBytes(of: next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < count { buf[i] = UInt8(truncatingIfNeeded: next()); i += 1 }
        }
        return out
    }

    public static func bytes(seed: UInt64, count: Int) -> [UInt8] {
        var g = SeededBytes(seed: seed)
        return g.bytes(count)
    }
}

public func writeFile(_ path: String, _ bytes: [UInt8]) {
    let dir = (path as NSString).deletingLastPathComponent
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

public func readFile(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

/// The result of running a process.
public struct ProcessResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var stdoutBytes: [UInt8]
}

/// Runs the built `trove` binary (found beside the test bundle) or any program, draining stdout
/// and stderr concurrently so that large outputs cannot deadlock.
public enum Runner {
    /// The products folder that holds the test bundle and the `trove` executable.
    public static var productsDirectory: String {
        if let p = ProcessInfo.processInfo.environment["TROVE_PRODUCTS_DIR"] { return p }
        for arg in CommandLine.arguments {
            if let r = arg.range(of: ".xctest") {
                return (String(arg[..<r.lowerBound]) as NSString).deletingLastPathComponent
            }
        }
        return (CommandLine.arguments[0] as NSString).deletingLastPathComponent
    }

    public static var trovePath: String { productsDirectory + "/trove" }

    /// An environment isolated from the user's: own HOME, no system git config, fixed author.
    public static func environment(home: String, extra: [String: String] = [:]) -> [String: String] {
        var env: [String: String] = [
            "HOME": home, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "TROVE_AUTHOR_NAME": "Test Author",
            "TROVE_AUTHOR_EMAIL": "test@example.invalid", "LANG": "C.UTF-8", "TROVE_PROGRESS": "0",
        ]
        if let tmp = ProcessInfo.processInfo.environment["TMPDIR"] { env["TMPDIR"] = tmp }
        env.merge(extra) { _, b in b }
        return env
    }

    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], cwd: String, environment: [String: String],
                           stdin: [UInt8]? = nil) -> ProcessResult {
        let p = start(executable, arguments, cwd: cwd, environment: environment)
        if let stdin { p.stdinPipe.fileHandleForWriting.write(Data(stdin)) }
        try? p.stdinPipe.fileHandleForWriting.close()
        return p.wait()
    }

    public final class Running {
        public let process: Process
        let stdinPipe = Pipe()
        let outPipe = Pipe()
        let errPipe = Pipe()
        var out = Data()
        var err = Data()
        let group = DispatchGroup()

        init(_ executable: String, _ arguments: [String], cwd: String, environment: [String: String]) {
            process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: cwd)
            process.environment = environment
            process.standardInput = stdinPipe
            process.standardOutput = outPipe
            process.standardError = errPipe
        }

        func launch() {
            try! process.run()
            group.enter()
            group.enter()
            DispatchQueue.global().async { self.out = self.outPipe.fileHandleForReading.readDataToEndOfFile(); self.group.leave() }
            DispatchQueue.global().async { self.err = self.errPipe.fileHandleForReading.readDataToEndOfFile(); self.group.leave() }
        }

        public func kill9() { kill(process.processIdentifier, SIGKILL) }

        public func wait() -> ProcessResult {
            process.waitUntilExit()
            group.wait()
            let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
            return ProcessResult(status: status, stdout: String(decoding: out, as: UTF8.self),
                                 stderr: String(decoding: err, as: UTF8.self), stdoutBytes: [UInt8](out))
        }
    }

    public static func start(_ executable: String, _ arguments: [String], cwd: String, environment: [String: String]) -> Running {
        let r = Running(executable, arguments, cwd: cwd, environment: environment)
        r.launch()
        return r
    }
}

/// A working folder with its own HOME, to drive `trove` as a user would.
public final class TroveSandbox {
    public let temp: TempDir
    public let work: String
    public let home: String
    public var extraEnvironment: [String: String] = [:]

    public init(_ label: String = "trove-e2e") {
        temp = TempDir(label)
        work = temp.sub("work")
        home = temp.sub("home")
    }

    public var environment: [String: String] { Runner.environment(home: home, extra: extraEnvironment) }

    @discardableResult
    public func trove(_ args: String..., cwd: String? = nil, stdin: [UInt8]? = nil) -> ProcessResult {
        trove(args, cwd: cwd, stdin: stdin)
    }

    @discardableResult
    public func trove(_ args: [String], cwd: String? = nil, stdin: [UInt8]? = nil) -> ProcessResult {
        Runner.run(Runner.trovePath, args, cwd: cwd ?? work, environment: environment, stdin: stdin)
    }

    public func start(_ args: [String], cwd: String? = nil) -> Runner.Running {
        Runner.start(Runner.trovePath, args, cwd: cwd ?? work, environment: environment)
    }

    @discardableResult
    public func shell(_ script: String, cwd: String? = nil) -> ProcessResult {
        var env = environment
        env["TROVE"] = Runner.trovePath
        return Runner.run("/bin/bash", ["-c", script], cwd: cwd ?? work, environment: env)
    }

    public func path(_ rel: String) -> String { work + "/" + rel }

    public func write(_ rel: String, _ bytes: [UInt8]) { writeFile(path(rel), bytes) }

    public func json(_ args: String...) -> Any? {
        let r = trove(args)
        return try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }
}

extension TroveSandbox {
    /// A folder with `trove` and `git-trove` (links to the built binary), first on PATH, so
    /// that git finds the filter and the hooks find trove; and a global git identity.
    public func enableGit(globalInstall: Bool = false) {
        let bin = temp.sub("bin")
        for name in ["trove", "git-trove"] where !FileManager.default.fileExists(atPath: bin + "/" + name) {
            try? FileManager.default.createSymbolicLink(atPath: bin + "/" + name, withDestinationPath: Runner.trovePath)
        }
        extraEnvironment["PATH"] = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        for (k, v) in [("user.name", "Test Author"), ("user.email", "test@example.invalid"), ("init.defaultBranch", "main"),
                       ("advice.detachedHead", "false")] {
            git(["config", "--global", k, v], cwd: home)
        }
        if globalInstall { trove(["install", "--global"], cwd: home) }
    }

    /// Runs the real git.
    @discardableResult
    public func git(_ args: [String], cwd: String? = nil, environment extra: [String: String] = [:], stdin: [UInt8]? = nil) -> ProcessResult {
        Runner.run("/usr/bin/git", args, cwd: cwd ?? work, environment: environment.merging(extra) { _, b in b }, stdin: stdin)
    }

    @discardableResult
    public func git(_ args: String..., cwd: String? = nil) -> ProcessResult { git(args, cwd: cwd) }
}

/// Polls `condition` every 0.1 s until it holds or `seconds` pass; its last answer.
public func waitFor(seconds: Double = 15, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if condition() { return true }
        usleep(100_000)
    }
    return condition()
}

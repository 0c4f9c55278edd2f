import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveProtocol
import TroveStore
import TroveSync

/// The `trove` command tree.
public struct TroveCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "trove",
        abstract: "A content-addressed, chunked store for large ML artifacts with git-like history.",
        discussion: """
            Exit codes: 0 success, 1 unexpected failure, 2 invalid input or usage, 3 not found \
            (revision, path, object or store), 4 integrity error (corrupt or missing data), \
            5 conflict (ref moved, local changes, lock held, non-fast-forward push), 6 I/O error \
            (disk full, permissions), 7 remote unreachable or connection lost, 8 remote refused \
            the credentials or role. \
            See Docs/cli.md.
            """,
        version: TroveVersion.string,
        subcommands: [
            Init.self, Add.self, Rm.self, Status.self, Commit.self, Log.self, Show.self, Diff.self,
            Checkout.self, Restore.self, Branch.self, Tag.self, Ls.self, Cat.self,
            Fsck.self, Gc.self, Du.self, Config.self,
            RemoteCmd.self, Push.self, Fetch.self, Pull.self, Clone.self, ServeStdio.self, Daemon.self,
            Install.self, Track.self, Untrack.self, LsFiles.self, ImportLFS.self, ExportLFS.self,
            FilterProcessCmd.self, TextConv.self, Hook.self,
            Run.self, Sweep.self, Cancel.self, LogMetric.self, Runs.self, NotebookCmd.self, Model.self, Dataset.self, Serve.self,
        ]
    )

    public init() {}
}


/// Options every command that works on a store takes.
struct StoreOptions: ParsableArguments {
    @Option(name: .customShort("C"), help: ArgumentHelp("Run as if trove was started in DIR.", valueName: "DIR"))
    var directory: String?

    @Flag(name: .shortAndLong, help: "No progress output.")
    var quiet = false

    var cwd: String { FileIO.absolute(directory ?? FileIO.currentDirectory()) }

    /// The store for the current folder: `$TROVE_DIR`; inside a git working tree (a linked
    /// worktree too) the repository's `.git/trove`, unless a `.trove` store is nearer; else the
    /// nearest `.trove` above.
    func openStore() throws -> Store {
        let env = ProcessInfo.processInfo.environment
        if env["TROVE_DIR"] == nil, let repo = GitRepository.discover(from: cwd), let top = repo.workTree,
           FileIO.exists(repo.storeRoot + "/config"), !GitMode.standaloneStore(between: cwd, and: top) {
            return try Store.open(root: repo.storeRoot, workTree: top)
        }
        return try Store.discover(from: cwd, environment: env)
    }

    func worktree() throws -> Worktree { try Worktree(store: try openStore()) }

    var progress: TerminalProgress? { TerminalProgress.make(quiet: quiet) }
}

/// Thrown to end a command with a given exit status after it printed its own output.
struct CommandFailed: Error {
    var code: Int32
}

public enum TroveCLI {
    public enum ExitStatus {
        public static let success: Int32 = 0
        public static let failure: Int32 = 1
        public static let invalidInput: Int32 = 2
        public static let notFound: Int32 = 3
        public static let integrity: Int32 = 4
        public static let conflict: Int32 = 5
        public static let io: Int32 = 6
        /// The remote could not be reached, or the connection broke.
        public static let transport: Int32 = 7
        /// The remote refused the credentials or the role.
        public static let denied: Int32 = 8
    }

    static func status(for code: SyncError.Code) -> Int32 {
        switch code {
        case .invalidInput: ExitStatus.invalidInput
        case .notFound: ExitStatus.notFound
        case .integrity: ExitStatus.integrity
        case .conflict: ExitStatus.conflict
        case .io: ExitStatus.io
        case .transport: ExitStatus.transport
        case .unauthorized, .forbidden: ExitStatus.denied
        }
    }

    static func status(for code: StoreError.Code) -> Int32 {
        switch code {
        case .invalidInput: ExitStatus.invalidInput
        case .notFound, .notAStore: ExitStatus.notFound
        case .integrity: ExitStatus.integrity
        case .conflict: ExitStatus.conflict
        case .io: ExitStatus.io
        }
    }

    /// Parses and runs one command line; the only place errors become output and exit codes.
    public static func run(_ arguments: [String]) -> Int32 {
        var arguments = arguments
        let json = arguments.contains("--json")
        // `trove -C DIR CMD ...`, as git: change folder before anything else.
        while arguments.count >= 2 && arguments[0] == "-C" {
            if chdir(arguments[1]) != 0 {
                report(code: "not-found", message: "cannot change to folder \(arguments[1]): \(FileIO.errorText())", hint: nil, json: json)
                return ExitStatus.notFound
            }
            arguments.removeFirst(2)
        }
        do {
            var command = try TroveCommand.parseAsRoot(arguments)
            try command.run()
            return ExitStatus.success
        } catch let e as CommandFailed {
            return e.code
        } catch let e as StoreError {
            report(code: e.code.rawValue, message: e.message, hint: e.hint, json: json)
            return status(for: e.code)
        } catch let e as SyncError {
            report(code: e.code.rawValue, message: e.message, hint: e.hint, json: json)
            return status(for: e.code)
        } catch let e as ProtocolError {
            // The daemon's own set-up (its PostgreSQL, its bucket) failing in this process.
            let sync = SyncError.from(e, remote: "trove daemon")
            report(code: sync.code.rawValue, message: e.message, hint: e.hint, json: json)
            return e.code == .general ? ExitStatus.failure : status(for: sync.code)
        } catch let e as CoreError {
            report(code: e.code.rawValue, message: e.message, hint: nil, json: json)
            return e.code == .invalidArgument || e.code == .invalidName ? ExitStatus.invalidInput : ExitStatus.integrity
        } catch {
            let code = TroveCommand.exitCode(for: error)
            let message = TroveCommand.fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { Console.out(message) }
                return ExitStatus.success
            }
            if code == .validationFailure {
                report(code: "usage", message: message, hint: nil, json: json, plain: true)
                return ExitStatus.invalidInput
            }
            report(code: "failure", message: message.isEmpty ? "\(error)" : message, hint: nil, json: json)
            return ExitStatus.failure
        }
    }

    static func report(code: String, message: String, hint: String?, json: Bool, plain: Bool = false) {
        if json {
            var obj: [String: Any] = ["code": code, "message": message]
            if let hint { obj["hint"] = hint }
            if let data = try? JSONSerialization.data(withJSONObject: ["error": obj], options: [.sortedKeys]) {
                FileHandle.standardError.write(data + "\n".data(using: .utf8)!)
            }
            return
        }
        Console.err(plain ? message : "trove: error: \(message)")
        if let hint { Console.err("hint: \(hint)") }
    }
}

import ArgumentParser
import Foundation
import Logging
import TroveCore
import TroveProtocol
import TroveServer
import TroveStore

extension TroveCommand {
    struct Daemon: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Host projects for push and fetch over HTTP(S), with tokens and roles.",
            discussion: """
                `trove daemon --root DIR --listen HOST:PORT` serves every project under DIR/projects \
                (create them with `trove daemon project create NAME --root DIR`). Clients use \
                http(s)://HOST:PORT/PROJECT as a remote URL and present a token (TROVE_TOKEN, or \
                ~/.config/trove/credentials) made with `trove daemon token create`. Routes, statuses \
                and metrics: Docs/protocol.md §HTTP. SIGTERM or SIGINT stops it gracefully (requests \
                in flight finish). With --objects s3://… and --metadata postgres://… (or TROVE_OBJECTS, \
                TROVE_METADATA) any number of daemons serve the same projects as replicas behind one \
                address, and --root is only each one's cache (Docs/deploy.md).
                """,
            subcommands: [Serve.self, Project.self, Token.self, Fsck.self],
            defaultSubcommand: Serve.self)

        struct RootOption: ParsableArguments {
            @Option(help: ArgumentHelp("The daemon's folder (projects/, tokens; with --objects s3://… only this replica's cache).", valueName: "DIR")) var root: String
            @Option(help: ArgumentHelp("Where packs are kept: s3://BUCKET/PREFIX[?endpoint=URL&region=R] (needs --metadata; credentials from the AWS chain). Default: under --root. Also TROVE_OBJECTS.", valueName: "URL"))
            var objects: String?
            @Option(help: ArgumentHelp("Where projects, tokens and refs are kept: postgres://USER[:PASSWORD]@HOST[:PORT]/DB (replicas share it; PGPASSWORD also read). Default: files under --root. Also TROVE_METADATA.", valueName: "URL"))
            var metadata: String?
            @Option(help: ArgumentHelp("With --objects: bytes of packs each project keeps on this replica's disk (e.g. 4G).", valueName: "SIZE"))
            var cache: String?
            var path: String { FileIO.absolute(root) }

            /// The projects and tokens, in files or in PostgreSQL (whose schema is brought up to date).
            func open() throws -> DaemonBackends.Opened {
                try FileIO.mkdirs(path)
                return try backends().open()
            }

            func backends() throws -> DaemonBackends {
                let env = ProcessInfo.processInfo.environment
                var b = DaemonBackends(root: path, objects: objects ?? env["TROVE_OBJECTS"].flatMap { $0.isEmpty ? nil : $0 },
                                       metadata: metadata ?? env["TROVE_METADATA"].flatMap { $0.isEmpty ? nil : $0 })
                if let cache {
                    guard let n = Format.parseSize(cache) else { throw StoreError(.invalidInput, "--cache takes a size like 4G or 512M, not \(cache)") }
                    b.cacheBytes = n
                }
                return b
            }
        }

        struct Serve: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Run the daemon (the default).")
            @OptionGroup var root: RootOption
            @Option(help: "Address and port to listen on (port 0: any free port, printed on stdout).") var listen = "127.0.0.1:8470"
            @Option(help: "PEM certificate chain: serve HTTPS.") var tlsCert: String?
            @Option(help: "PEM private key for --tls-cert.") var tlsKey: String?
            @Option(help: "Largest upload accepted, in bytes.") var maxUpload = SyncProtocol.defaultMaxUploadBytes
            @Option(help: "Uploads processed at once (more get 503 and retry).") var maxUploads = 8
            @Option(help: "Limit each download stream to this many bytes per second (testing multi-peer fetches).") var limitRate: Int?
            @Option(help: ArgumentHelp("Keep a project in sync with a peer: NAME=URL[,interval=60s][,direction=pull|push|both][,project=P] (repeatable; project defaults to the URL's last part; the peer's token comes from the credentials file).", valueName: "SPEC"))
            var mirror: [String] = []

            func run() throws {
                guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
                    throw StoreError(.invalidInput, "--listen takes HOST:PORT, not \(listen)")
                }
                guard (tlsCert == nil) == (tlsKey == nil) else { throw StoreError(.invalidInput, "--tls-cert and --tls-key go together") }
                try FileIO.mkdirs(root.path + "/projects")
                var config = DaemonConfiguration(root: root.path)
                config.backends = try root.backends()
                config.host = String(listen[..<colon])
                config.port = port
                config.tlsCertificate = tlsCert
                config.tlsKey = tlsKey
                config.maxUploadBytes = maxUpload
                config.maxConcurrentUploads = maxUploads
                config.limitRate = limitRate
                config.mirrors = try mirror.map { try MirrorSpec.parse($0) }
                var logger = Logger(label: "trove.daemon")
                logger.logLevel = ProcessInfo.processInfo.environment["TROVE_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? (mirror.isEmpty ? .warning : .info)
                let scheme = tlsCert == nil ? "http" : "https"
                let host = config.host, root = config.root
                let app = try buildApplication(config, logger: logger) { bound in
                    Console.out("trove daemon listening on \(scheme)://\(host):\(bound) (root \(root))")
                    fflush(stdout)
                }
                if let e = runUntilStopped(app) {
                    throw StoreError(.io, "the daemon stopped: \(e)", hint: "is \(listen) already in use?")
                }
            }
        }

        struct Project: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create or list projects.", subcommands: [Create.self, List.self])

            struct Create: ParsableCommand {
                static let configuration = CommandConfiguration(abstract: "Create a project (an empty bare store under ROOT/projects).")
                @Argument(help: "Its name: lowercase letters, digits, '.', '_', '-'.") var name: String
                @OptionGroup var root: RootOption
                @Option(help: "Average chunk size in bytes (a power of two).") var chunkAvg = ChunkerParameters.default.avgSize

                func run() throws {
                    let p = ChunkerParameters(minSize: chunkAvg / 4, avgSize: chunkAvg, maxSize: chunkAvg * 4)
                    let projects = try root.open().projects
                    do { try projects.create(name, parameters: p) } catch let e as ProtocolError {
                        throw StoreError(e.code == .conflict ? .conflict : .invalidInput, e.message, hint: e.hint)
                    }
                    Console.out("Created project \(name) in \(projects.database?.display ?? root.path + "/projects/" + name)")
                }
            }

            struct List: ParsableCommand {
                static let configuration = CommandConfiguration(abstract: "List projects.")
                @OptionGroup var root: RootOption
                @Flag(help: "Print JSON.") var json = false

                func run() throws {
                    let names = try root.open().projects.names()
                    if json { try Console.json(names); return }
                    for n in names { Console.out(n) }
                }
            }
        }

        struct Token: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create, list or revoke access tokens.", subcommands: [Create.self, List.self, Revoke.self])

            struct Create: ParsableCommand {
                static let configuration = CommandConfiguration(
                    abstract: "Create a token for one project and role; it is printed once and only its hash is kept.")
                @OptionGroup var root: RootOption
                @Option(help: "The project it opens.") var project: String
                @Option(help: "read (list, fetch), write (also push), admin (also settings).") var role: String
                @Option(help: "Lifetime: 30d, 12h, 90m, or seconds (default: no expiry).") var expires: String?
                @Flag(help: "Print JSON.") var json = false

                func run() throws {
                    guard let r = Role(name: role) else { throw StoreError(.invalidInput, "--role takes read, write or admin, not \(role)") }
                    var seconds: Int64?
                    if let expires {
                        guard let s = parseDuration(expires) else { throw StoreError(.invalidInput, "--expires takes 30d, 12h, 90m or a number of seconds, not \(expires)") }
                        seconds = s
                    }
                    do { try ProjectRegistry.validate(project) } catch let e as ProtocolError { throw StoreError(.invalidInput, e.message, hint: e.hint) }
                    let (token, entry) = try root.open().tokens.create(project: project, role: r, expiresIn: seconds)
                    if json {
                        try Console.json(["token": token, "id": entry.id, "project": project, "role": "\(r)", "expires": entry.expires])
                        return
                    }
                    Console.out(token)
                    Console.err("token \(entry.id) for project \(project), role \(r)\(entry.expires > 0 ? ", expires \(Format.iso(entry.expires, offsetMinutes: 0))" : ""); it is not shown again")
                }
            }

            struct List: ParsableCommand {
                static let configuration = CommandConfiguration(abstract: "List tokens (ids, never the tokens).")
                @OptionGroup var root: RootOption
                @Flag(help: "Print JSON.") var json = false

                func run() throws {
                    let list = try root.open().tokens.list()
                    if json {
                        try Console.json(list.map { ["id": $0.id, "project": $0.project, "role": "\($0.role)", "expires": $0.expires, "created": $0.created] as [String: Any] })
                        return
                    }
                    for e in list { Console.out("\(e.id)  \(e.project)  \(e.role)  \(e.expires == 0 ? "never" : Format.iso(e.expires, offsetMinutes: 0))") }
                }
            }

            struct Revoke: ParsableCommand {
                static let configuration = CommandConfiguration(abstract: "Revoke a token by id (or by its value); it stops working at once.")
                @OptionGroup var root: RootOption
                @Argument(help: "The token's id (from `token list`) or the token itself.") var token: String

                func run() throws {
                    guard try root.open().tokens.revoke(token) else { throw StoreError(.notFound, "no token \(token)") }
                    Console.out("Revoked \(token.hasPrefix(TokenStore.prefix) ? "the token" : "token \(token)")")
                }
            }
        }

        struct Fsck: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Check a project as the daemon holds it: every pack's index and every ref's history (with --full, every object re-read and verified).",
                discussion: "With --objects/--metadata it checks what the replicas share (packs in S3, refs in PostgreSQL), not one replica's cache. Exit 0: clean; 4: problems, listed.")
            @Argument(help: "The project.") var name: String
            @OptionGroup var root: RootOption
            @Flag(help: "Re-read every object and check it against its id.") var full = false
            @Flag(help: "Print JSON.") var json = false

            func run() throws {
                guard let svc = try root.open().projects.service(name) else {
                    throw StoreError(.notFound, "no project \(name)", hint: "list them with `trove daemon project list`")
                }
                try TroveCommand.Fsck.report(try svc.check(full: full), json: json)
            }
        }
    }
}


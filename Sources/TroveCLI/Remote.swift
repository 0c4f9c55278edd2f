import ArgumentParser
import Foundation
import TroveCore
import TroveStore
import TroveSync

/// Remotes live in the store's config as `remote.NAME.url`.
enum Remotes {
    static func names(_ store: Store) -> [String] {
        Set(store.config.values.keys.compactMap { k -> String? in
            guard k.hasPrefix("remote."), k.hasSuffix(".url") else { return nil }
            return String(k.dropFirst(7).dropLast(4))
        }).sorted()
    }

    static func url(_ store: Store, _ name: String) -> String? { store.config.values["remote.\(name).url"] }

    static func validate(name: String) throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }), !name.hasPrefix(".") else {
            throw StoreError(.invalidInput, "\(name.debugDescription) is not a valid remote name", hint: "use letters, digits, '-', '_' and '.'")
        }
    }

    /// The remote a command names (a configured name or a URL), or the default one: `origin`,
    /// else the only remote there is.
    static func resolve(_ store: Store, _ nameOrURL: String?) throws -> (name: String?, url: String) {
        if let n = nameOrURL {
            if let u = url(store, n) { return (n, u) }
            if n.contains("/") || n.contains(":") { return (nil, n) }
            throw StoreError(.notFound, "no remote named \(n)", hint: "add it with `trove remote add \(n) URL`; `trove remote list` shows the others")
        }
        let all = names(store)
        if let u = url(store, "origin") { return ("origin", u) }
        if all.count == 1 { return (all[0], url(store, all[0])!) }
        throw StoreError(.notFound, all.isEmpty ? "no remote configured" : "several remotes and none is origin: name one",
                         hint: all.isEmpty ? "add one with `trove remote add origin URL`" : "remotes: \(all.joined(separator: ", "))")
    }

    static func open(_ url: String, store: Store?) throws -> Remote {
        try RemoteOpener.open(url, environment: ProcessInfo.processInfo.environment, base: store?.workTree ?? FileIO.currentDirectory())
    }
}

extension TroveCommand {
    struct RemoteCmd: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remote",
            abstract: "Manage the peers this store pushes to and fetches from.",
            discussion: """
                A remote URL is a store path (/scratch/proj/store, ../other, file:///x), \
                ssh://[user@]host[:port]/path or host:path (runs `trove serve-stdio PATH` there \
                through the system ssh; TROVE_SSH overrides the ssh command, TROVE_REMOTE_TROVE \
                the trove on the far side). A path may name a store or a working tree holding one. \
                http(s)://HOST:PORT/PROJECT is a trove daemon; s3://BUCKET/PREFIX a bucket (credentials from \
                the AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile; see Docs/s3.md).
                """,
            subcommands: [Add.self, Remove.self, List.self, Show.self],
            defaultSubcommand: List.self)

        struct Add: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Add a remote.")
            @Argument(help: "Its name (origin, scratch, ...).") var name: String
            @Argument(help: "Its URL.") var url: String
            @Option(help: "For s3:// remotes: the S3 endpoint (http(s)://HOST:PORT of radosgw, MinIO, ...; default AWS or AWS_ENDPOINT_URL).") var endpoint: String?
            @Option(help: "For s3:// remotes: the region (default AWS_REGION, AWS_DEFAULT_REGION or us-east-1).") var region: String?
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                try Remotes.validate(name: name)
                if Remotes.url(store, name) != nil {
                    throw StoreError(.conflict, "remote \(name) exists already", hint: "remove it first with `trove remote remove \(name)`")
                }
                var u = url
                if case .path(let p) = try RemoteURL.parse(url, relativeTo: options.cwd) { u = p }
                if endpoint != nil || region != nil {
                    guard url.hasPrefix("s3://") else { throw StoreError(.invalidInput, "--endpoint and --region are for s3:// remotes") }
                    var l = try S3Location.parse(url)
                    l.endpoint = endpoint ?? l.endpoint
                    l.region = region ?? l.region
                    u = try S3Location.parse(l.text).text
                }
                try store.setConfig("remote.\(name).url", u)
                if !options.quiet { Console.out("Added remote \(name): \(u)") }
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Remove a remote and its remote-tracking refs.")
            @Argument(help: "Its name.") var name: String
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                guard Remotes.url(store, name) != nil else { throw StoreError(.notFound, "no remote named \(name)") }
                for key in store.config.values.keys where key.hasPrefix("remote.\(name).") { try store.setConfig(key, nil) }
                for r in try store.refs.list(prefix: "remotes/\(name)/") {
                    try store.refs.update(r.name, from: r.id, to: nil, message: "remote remove")
                }
                if !options.quiet { Console.out("Removed remote \(name)") }
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List remotes.")
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                let names = Remotes.names(store)
                if json {
                    try Console.json(names.map { ["name": $0, "url": Remotes.url(store, $0) ?? ""] })
                    return
                }
                for n in names { Console.out("\(n)\t\(Remotes.url(store, n) ?? "")") }
            }
        }

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Contact a remote and list its refs.")
            @Argument(help: "A remote name or URL (default: origin).") var remote: String?
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var options: StoreOptions

            func run() throws {
                let store = try options.openStore()
                let (name, url) = try Remotes.resolve(store, remote)
                let r = try Remotes.open(url, store: store)
                defer { r.close() }
                let (info, refs) = try r.hello()
                if json {
                    try Console.json([
                        "name": name ?? "", "url": url, "agent": info.agent, "head": info.head ?? "",
                        "chunker": ["min": info.chunker.minSize, "avg": info.chunker.avgSize, "max": info.chunker.maxSize],
                        "refs": refs.map { ["name": $0.name, "id": $0.id.hex] },
                    ] as [String: Any])
                    return
                }
                Console.out("remote \(name ?? url)\n  url: \(url)\n  agent: \(info.agent)\n  chunker: \(info.chunker)\n  HEAD: \(info.head ?? "(none)")")
                for ref in refs {
                    let local = try store.refs.read("remotes/\(name ?? "")/\(ref.name)")
                    let state = name == nil ? "" : local == ref.id ? "  (up to date)" : local == nil ? "  (new)" : "  (changed)"
                    Console.out("  \(ref.id.short())  \(ref.name)\(state)")
                }
            }
        }
    }
}

/// Chunks a checkout needs that a partial or metadata-only fetch left on the remotes: fetched
/// before the files are written (from origin, drawing on every other remote too).
enum LazyFetch {
    static func ensure(_ store: Store, commit: ObjectID, filter: PathFilter, progress: ProgressSink?) throws {
        let missing = try Fetcher.missingChunks(in: store, commits: [commit], filter: filter)
        guard !missing.isEmpty else { return }
        let names = Remotes.names(store)
        guard !names.isEmpty else {
            throw StoreError(.notFound, "\(missing.count) chunk(s) of \(commit.short()) are not in this store and no remote is configured",
                             hint: "add the remote that has them (`trove remote add origin URL`) and retry")
        }
        let primaryName = names.contains("origin") ? "origin" : names[0]
        let primary = try Remotes.open(Remotes.url(store, primaryName)!, store: store)
        defer { primary.close() }
        let others = try names.filter { $0 != primaryName }.map { try Remotes.open(Remotes.url(store, $0)!, store: store) }
        defer { for o in others { o.close() } }
        let f = Fetcher(store: store, remote: primary, remoteName: primaryName, extraPeers: others)
        f.progress = progress
        _ = try f.fetchChunks(missing, writer: ObjectWriter(store: store))
    }
}

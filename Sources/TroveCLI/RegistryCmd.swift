import ArgumentParser
import Foundation
import TroveCore
import TroveRuns
import TroveStore
import TroveSync

/// Which registry a command works on: `trove model ...` or `trove dataset ...` (the same
/// commands, Docs/registry.md).
protocol RegistryKindName {
    static var kind: Registry.Kind { get }
}
enum ModelKind: RegistryKindName { static var kind: Registry.Kind { .model } }
enum DatasetKind: RegistryKindName { static var kind: Registry.Kind { .dataset } }

extension TroveCommand {
    struct Model: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "model",
            abstract: "Versioned models with cards, aliases and lineage (models/NAME/vN).",
            discussion: "NAME@vN, NAME@ALIAS and NAME@latest are revisions everywhere (restore, checkout, ls, cat, diff). See Docs/registry.md.",
            subcommands: RegistryCommands<ModelKind>.all)
    }

    struct Dataset: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dataset",
            abstract: "Versioned datasets with cards, aliases and lineage (datasets/NAME/vN).",
            discussion: "NAME@vN, NAME@ALIAS and NAME@latest are revisions everywhere (restore, checkout, ls, cat, diff). See Docs/registry.md.",
            subcommands: RegistryCommands<DatasetKind>.all)
    }
}

enum RegistryCommands<K: RegistryKindName> {
    static var all: [ParsableCommand.Type] {
        [Publish<K>.self, List<K>.self, Show<K>.self, Pull<K>.self, Promote<K>.self, Deprecate<K>.self, Lineage<K>.self, ImportHF<K>.self]
    }
}

struct Publish<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "publish", abstract: "Record a new version of NAME (v1, v2, ...) from files and folders, or from a run's outputs.",
                             discussion: "The version's parent is the previous version; --from-run records the run (and through it the code, parameters and input data) as its provenance. Exit 5 when --version names an existing version.")
    }
    @Argument(help: "The name (letters, digits, '.', '_', '-').") var name: String
    @Argument(help: "Files and folders (a folder keeps its name). None with --from-run: the run's outputs.") var paths: [String] = []
    @Option(name: .customLong("from-run"), help: "The run that made it (an id or runs/ID).") var fromRun: String?
    @Option(help: "A Markdown card, recorded as README.md.") var card: String?
    @Option(name: .customLong("meta"), help: ArgumentHelp("Metadata, repeatable.", valueName: "KEY=VALUE")) var meta: [String] = []
    @Option(help: "Point this alias at the new version (e.g. staging).") var alias: String?
    @Option(help: "An explicit version number (refused when it exists).") var version: Int?
    @Option(name: .shortAndLong, help: "A message for the version.") var message: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var options: StoreOptions

    func run() throws {
        let store = try options.openStore()
        let registry = Registry(store: store, kind: K.kind)
        var p = Registry.Publication(name: name)
        p.paths = paths.map { FileIO.absolute($0, base: options.cwd) }
        p.card = card.map { FileIO.absolute($0, base: options.cwd) }
        p.alias = alias
        p.version = version
        p.message = message
        for m in meta {
            let (k, v) = try RunSpec.parameter(m, form: "KEY=VALUE", example: "--meta framework=pytorch")
            p.metadata[k] = v
        }
        if let fromRun {
            let id = fromRun.hasPrefix("runs/") ? String(fromRun.dropFirst(5)) : fromRun
            guard let run = try RunList.all(store).first(where: { $0.id == id }) ?? RunList.all(store).first(where: { $0.id.hasPrefix(id) }) else {
                throw StoreError(.notFound, "no run \(fromRun) in this store", hint: "`trove runs` lists them")
            }
            p.run = run
        }
        let (n, commit) = try registry.publish(p)
        if json {
            try Console.json(["name": name, "version": n, "commit": commit.hex, "ref": "\(K.kind.root)/\(name)/v\(n)", "alias": alias as Any? ?? NSNull()])
        } else if !options.quiet {
            Console.out("Published \(K.kind) \(name)@v\(n) (\(commit.short()))\(alias.map { ", \($0) → v\(n)" } ?? "")")
        }
    }
}

struct List<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "list", abstract: "Every name with its latest version, aliases and version count.")
    }
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var options: StoreOptions

    func run() throws {
        let registry = Registry(store: try options.openStore(), kind: K.kind)
        var rows: [[String: Any]] = []
        for name in try registry.names() {
            let versions = try registry.versions(name)
            let aliases = try registry.aliases(name)
            rows.append(["name": name, "latest": versions.last?.version ?? 0, "versions": versions.count,
                         "aliases": Dictionary(aliases.map { a in (a.alias, versions.first { $0.commit == a.commit }?.version ?? 0) }, uniquingKeysWith: { x, _ in x }),
                         "deprecated": try registry.deprecations(name).keys.sorted()])
        }
        if json { return try Console.json(rows) }
        if rows.isEmpty { return Console.out("No \(K.kind)s yet: `trove \(K.kind) publish NAME PATH...` records one.") }
        for r in rows {
            let aliases = (r["aliases"] as! [String: Int]).sorted { $0.key < $1.key }.map { "\($0.key)=v\($0.value)" }.joined(separator: " ")
            Console.out("\(Format.column(r["name"] as! String, 24)) v\(r["latest"]!)  \(r["versions"]!) version(s)\(aliases.isEmpty ? "" : "  " + aliases)")
        }
    }
}

struct Show<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "show", abstract: "A version: metadata, files, card, aliases, provenance (NAME = NAME@latest).")
    }
    @Argument(help: "NAME, NAME@vN or NAME@ALIAS.") var version: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var options: StoreOptions

    func run() throws {
        let store = try options.openStore()
        let registry = Registry(store: store, kind: K.kind)
        let (name, n, commit) = try registry.resolve(version)
        let c = try store.commit(commit)
        let files = try store.flatten(tree: c.tree).sorted { $0.key < $1.key }
        let aliases = try registry.aliases(name).filter { $0.commit == commit }.map(\.alias)
        let deprecated = try registry.deprecations(name)[n]
        let card = try files.first { $0.key == "README.md" }.map { String(decoding: try Materializer.readBlob(store: store, blob: $0.value.id), as: UTF8.self) }
        let meta = Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        if json {
            return try Console.json([
                "name": name, "version": n, "commit": commit.hex, "time": c.time, "author": c.author, "aliases": aliases,
                "deprecated": deprecated as Any? ?? NSNull(), "run": meta["registry.run"] as Any? ?? NSNull(),
                "metadata": meta.filter { $0.key.hasPrefix("meta.") }.reduce(into: [String: String]()) { $0[String($1.key.dropFirst(5))] = $1.value },
                "files": files.map { ["path": $0.key, "size": $0.value.size, "id": $0.value.id.hex] }, "card": card as Any? ?? NSNull(),
            ] as [String: Any])
        }
        Console.out("\(K.kind) \(name)@v\(n)  \(commit.hex)")
        Console.out("published \(Format.date(c.time, offsetMinutes: c.timezoneOffset)) by \(c.author)" + (aliases.isEmpty ? "" : "; aliases: " + aliases.joined(separator: ", ")))
        if let deprecated { Console.out("DEPRECATED: \(deprecated)") }
        if let run = meta["registry.run"] { Console.out("made by run \(run)") }
        for (k, v) in meta.sorted(by: { $0.key < $1.key }) where k.hasPrefix("meta.") { Console.out("  \(k.dropFirst(5)) = \(v)") }
        Console.out("\(files.count) file(s), \(Format.bytes(files.reduce(0) { $0 + $1.value.size })):")
        for (p, e) in files { Console.out("  \(Format.column(Format.bytes(e.size), 10)) \(p)") }
        if let card { Console.out("\n" + card) }
    }
}

struct Pull<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "pull", abstract: "Fetch NAME's versions from a remote and write one version's files into a folder.",
                             discussion: "Only the chunks the store lacks cross the network. Without --to, only the versions are fetched.")
    }
    @Argument(help: "NAME, NAME@vN or NAME@ALIAS.") var version: String
    @Option(help: "The remote (default: origin, or the only remote).") var remote: String?
    @Option(help: "Write the version's files into this folder.") var to: String?
    @OptionGroup var options: StoreOptions

    func run() throws {
        let store = try options.openStore()
        let name = String(version.split(separator: "@").first ?? "")
        try Registry.validate(name: name)
        let fetched = try RegistryRemote.fetch(store, kind: K.kind, name: name, remote: remote)
        let (_, n, commit) = try Registry(store: store, kind: K.kind).resolve(version)
        guard let to else {
            if !options.quiet { Console.out("Fetched \(fetched.refs) ref(s) of \(K.kind) \(name) from \(fetched.remote); \(version) is v\(n)") }
            return
        }
        let dir = FileIO.absolute(to, base: options.cwd)
        try LazyFetch.ensure(store, commit: commit, filter: .all, progress: options.progress)
        let files = try store.flatten(tree: try store.commit(commit).tree).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        try FileIO.mkdirs(dir)
        _ = try Materializer(store: store, root: dir).write(files)
        if !options.quiet { Console.out("\(K.kind) \(name)@v\(n): \(files.count) file(s) in \(dir)") }
    }
}

struct Promote<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "promote", abstract: "Point an alias (prod, staging, ...) at a version, by compare-and-swap.",
                             discussion: "Refused (exit 5) for a deprecated version, or when --expect is given and the alias is elsewhere.")
    }
    @Argument(help: "NAME@vN (or NAME@ALIAS: the version that alias names).") var version: String
    @Argument(help: "The alias to move.") var alias: String
    @Option(help: "The version the alias must be at now (vN, or none).") var expect: String?
    @OptionGroup var options: StoreOptions

    func run() throws {
        let registry = Registry(store: try options.openStore(), kind: K.kind)
        let (name, n, _) = try registry.resolve(version)
        var expected: Int?
        if let expect, expect != "none" {
            guard expect.hasPrefix("v"), let e = Int(expect.dropFirst()) else { throw StoreError(.invalidInput, "--expect takes vN or none") }
            expected = e
        }
        let (old, new) = try registry.promote(name, version: n, alias: alias, expected: expected)
        if !options.quiet { Console.out("\(name)@\(alias): \(old.map { "v\($0)" } ?? "(new)") → v\(new)") }
    }
}

struct Deprecate<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "deprecate", abstract: "Mark a version deprecated, with a reason (recorded as a commit; it cannot be promoted after).")
    }
    @Argument(help: "NAME@vN.") var version: String
    @Option(help: "Why.") var reason: String
    @OptionGroup var options: StoreOptions

    func run() throws {
        let registry = Registry(store: try options.openStore(), kind: K.kind)
        let (name, n, _) = try registry.resolve(version)
        try registry.deprecate(name, version: n, reason: reason)
        if !options.quiet { Console.out("\(name)@v\(n) is deprecated: \(reason)") }
    }
}

struct Lineage<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "lineage", abstract: "The chain behind a version: the run that made it, its code and parameters, the data it read.")
    }
    @Argument(help: "NAME, NAME@vN or NAME@ALIAS.") var version: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var options: StoreOptions

    func run() throws {
        let registry = Registry(store: try options.openStore(), kind: K.kind)
        let links = try registry.lineage(version) + registry.served(version)
        if json { return try Console.json(links.map(\.json)) }
        for l in links {
            let pad = String(repeating: "  ", count: max(0, l.depth))
            Console.out("\(pad)\(l.depth == 0 ? "" : l.depth < 0 ? "→ " : "← ")\(l.label)  \(l.commit?.short() ?? "")")
            for (k, v) in l.detail.sorted(by: { $0.key < $1.key }) where !v.isEmpty { Console.out("\(pad)    \(k): \(v)") }
        }
    }
}

struct ImportHF<K: RegistryKindName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "import-hf", abstract: "Record a local Hugging Face snapshot folder (snapshot_download's) as a new version.",
                             discussion: "The folder's files go to the top of the version (its .cache and .git are left out); its README.md is the card. The daemon serves it back to huggingface_hub (Docs/registry.md).")
    }
    @Argument(help: "The snapshot folder.") var directory: String
    @Option(help: "The name of the model or dataset.") var name: String
    @Option(name: .customLong("meta"), help: ArgumentHelp("Metadata, repeatable.", valueName: "KEY=VALUE")) var meta: [String] = []
    @Option(help: "Point this alias at the new version.") var alias: String?
    @OptionGroup var options: StoreOptions

    func run() throws {
        let dir = FileIO.absolute(directory, base: options.cwd)
        guard FileIO.isDirectory(dir) else { throw StoreError(.notFound, "\(directory) is not a folder", hint: "give the folder snapshot_download returned") }
        var p = Registry.Publication(name: name)
        p.paths = [dir]
        p.contents = true
        p.alias = alias
        p.metadata["source"] = "huggingface"
        for m in meta {
            let (k, v) = try RunSpec.parameter(m, form: "KEY=VALUE", example: "--meta hf_repo=org/name")
            p.metadata[k] = v
        }
        let (n, commit) = try Registry(store: try options.openStore(), kind: K.kind).publish(p)
        if !options.quiet { Console.out("Imported \(directory) as \(K.kind) \(name)@v\(n) (\(commit.short()))") }
    }
}

/// Brings a model's or dataset's refs from a remote (metadata only): versions are immutable and
/// aliases follow the remote, so they are taken as the remote has them.
enum RegistryRemote {
    @discardableResult
    static func fetch(_ store: Store, kind: Registry.Kind, name: String, remote: String?) throws -> (remote: String, refs: Int) {
        try Registry.validate(name: name)
        let remotes = Remotes.names(store)
        guard let remoteName = remote ?? (remotes.contains("origin") ? "origin" : remotes.count == 1 ? remotes[0] : nil),
              let url = Remotes.url(store, remoteName) else {
            throw StoreError(.invalidInput, remotes.isEmpty ? "this store has no remote" : "which remote? (\(remotes.joined(separator: ", ")))", hint: "--remote NAME")
        }
        let r = try RemoteOpener.open(url, environment: ProcessInfo.processInfo.environment, base: FileIO.dirname(store.root))
        defer { r.close() }
        let prefix = "\(kind.root)/\(name)/"
        let theirs = try r.listRefs().filter { $0.name.hasPrefix(prefix) }
        guard !theirs.isEmpty else { throw StoreError(.notFound, "\(remoteName) has no \(kind) \(name)") }
        let fetcher = Fetcher(store: store, remote: r, remoteName: remoteName)
        fetcher.metadataOnly = true
        _ = try fetcher.fetch(theirs.map(\.name))
        for ref in theirs where try store.refs.read(ref.name) != ref.id {
            try store.refs.update(ref.name, from: try store.refs.read(ref.name), to: ref.id, message: "pull from \(remoteName)", force: true)
        }
        return (remoteName, theirs.count)
    }
}

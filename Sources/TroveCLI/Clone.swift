import ArgumentParser
import Foundation
import TroveCore
import TroveStore
import TroveProtocol
import TroveSync

extension TroveCommand {
    struct Clone: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a remote store into a new folder and check out its branch.",
            discussion: """
                Creates DIR (default: the last part of the URL), a store in DIR/.trove with the \
                remote's chunker settings and the remote `origin`; fetches the metadata of every ref \
                (to remotes/origin/...) and the chunks of the remote HEAD's branch, creates that \
                branch and checks it out; files of 8 MiB and more, and small files of one chunk, \
                are written while their chunks arrive. With --include, only matching paths get their chunks \
                fetched and are written (a partial clone: the others stay tracked; `trove checkout \
                REV PATH` later fetches and writes more, and adds PATH to STORE/sparse). Other refs' files are fetched when checked out later \
                (`trove fetch` brings their chunks). For a store on a shared file system to push \
                to, use `trove init --bare DIR`.
                """)

        @Argument(help: "The remote's URL.") var url: String
        @Argument(help: "The folder to create.") var directory: String?
        @Option(name: .customLong("from"), help: "Another remote URL to fetch chunks from as well (repeatable).") var peers: [String] = []
        @Option(name: .customLong("include"), help: ArgumentHelp("A partial clone: only paths matching PATTERN are fetched and written (repeatable; * within a name, ** across folders, a folder means everything below it).", valueName: "PATTERN"))
        var include: [String] = []
        @OptionGroup var options: StoreOptions

        func run() throws {
            let target = FileIO.absolute(directory ?? Clone.defaultDirectory(url), base: options.cwd)
            if FileIO.exists(target), !(try FileIO.listDirectory(target).isEmpty) {
                throw StoreError(.conflict, "\(target) exists and is not empty", hint: "name another folder")
            }
            let absoluteURL: String
            if case .path(let p) = try RemoteURL.parse(url, relativeTo: options.cwd) { absoluteURL = p } else { absoluteURL = url }
            let remote = try Remotes.open(absoluteURL, store: nil)
            let (info, _) = try remote.hello()
            remote.close()
            try FileIO.mkdirs(target)
            let store = try Store.initialize(root: target + "/" + Store.directoryName, workTree: target, parameters: info.chunker)
            try store.setConfig("remote.origin.url", absoluteURL)
            // Sparse before the fetch: chunks come only for these paths.
            if !include.isEmpty { try PathFilter(include).save(store: store.root) }
            var run = FetchRun(store: store, name: "origin", url: absoluteURL, peers: peers, chunksForHeadOnly: true, progress: options.progress)
            // Files are written while their chunks arrive (Docs/decisions.md §Clone).
            var streaming: StreamingCheckout?
            defer { streaming?.abandon() }
            run.configure = { f in
                guard ProcessInfo.processInfo.environment["TROVE_STREAMING_CLONE"] != "0" else { return }
                f.beforeChunks = { commits in
                    guard let tip = commits.first, commits.count == 1 else { return }
                    let sparse = try PathFilter.load(store: store.root)
                    let files = try store.flatten(tree: try store.commit(tip).tree).filter { sparse.isAll || sparse.includes($0.key) }
                    // Without it (too many open files, say) the clone writes every file after the fetch.
                    guard let s = try? StreamingCheckout(store: store, root: target, entries: files.map { ($0.key, $0.value) }) else { return }
                    streaming = s
                    f.received = { try s.receive($0) }
                }
            }
            let (r, _) = try run.run(refs: nil)
            FetchRun.report(r, from: url, quiet: options.quiet)
            let wt = try Worktree(store: store)
            guard let head = info.head, let tip = r.refs.first(where: { $0.name == head })?.new else {
                if !options.quiet { Console.out("Cloned an empty store (no branch to check out) into \(target)") }
                return
            }
            let prepared = streaming?.finish() ?? [:]
            let s = try wt.checkout(tip, newHead: .branch(head), force: true, progress: options.progress, prepared: prepared) {
                try store.refs.update(head, from: nil, to: tip, message: "clone: from \(url)")
            }
            if !options.quiet {
                let streamed = prepared.isEmpty ? "" : ", \(prepared.count) written as their chunks arrived"
                Console.out("Cloned \(url) into \(target): \(head.dropFirst(6)) at \(tip.short()), \(s.written) file(s) (\(Format.bytes(s.bytes)))\(streamed)")
            }
        }

        static func defaultDirectory(_ url: String) -> String {
            var last = url.split(separator: "/").last.map(String.init) ?? "clone"
            if let colon = last.lastIndex(of: ":") { last = String(last[last.index(after: colon)...]) }
            for suffix in [".trove", "/.trove"] where last.hasSuffix(suffix) { last = String(last.dropLast(suffix.count)) }
            return last.isEmpty || last == ".trove" ? "clone" : last
        }
    }

    struct ServeStdio: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve-stdio",
            abstract: "Serve a store over stdin/stdout (what ssh runs on the far side).",
            discussion: """
                Speaks the stream transport of Docs/protocol.md until the client says bye or closes \
                the connection. PATH may be a store or a working tree that holds one. Not for \
                interactive use.
                """)

        @Argument(help: "The store to serve.") var path: String
        @Option(help: "Largest upload accepted, in bytes.") var maxUpload = SyncProtocol.defaultMaxUploadBytes

        func run() throws {
            let root = FileIO.absolute(path)
            let store: SharedStore
            do { store = try SharedStore(root: PathRemote.storeRoot(root)) } catch let e as StoreError {
                // Told to the client, which shows it; nothing more on stderr.
                StreamServer.refuse(e, input: 0, output: 1)
                throw CommandFailed(code: TroveCLI.status(for: e.code))
            }
            let service = SyncService(store: store)
            service.maxUploadBytes = maxUpload
            try StreamServer.serve(service, input: 0, output: 1)
        }
    }
}

import ArgumentParser
import Foundation
import Glibc
import TroveCore
import TroveGit
import TroveStore
import TroveSync

extension TroveCommand {
    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set up Trove in a git repository: filter, diff and hooks.",
            discussion: """
                Sets filter.trove.process (`trove filter-process`), filter.trove.required=true and \
                diff.trove.textconv in the repository's git config, creates the store in .git/trove \
                (shared by its worktrees) and writes the pre-push, post-checkout, post-merge and \
                post-commit hooks into core.hooksPath or .git/hooks. A hook already there keeps \
                running: it is moved to NAME.trove-chained and called by Trove's. Running it again \
                changes nothing. --uninstall undoes exactly that (the store and its data stay). \
                --global sets only the filter and diff config, in ~/.gitconfig, for every repository.
                """)

        @Flag(help: "Only the filter and diff config, in the user's git config.") var global = false
        @Flag(help: "Undo what install did.") var uninstall = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            if global {
                let file = try GitConfigFile.global()
                let changed = uninstall ? try GitInstall.removeConfig(file) : try GitInstall.setConfig(file)
                if !options.quiet {
                    Console.out(changed.isEmpty ? "\(file.path): nothing to change" : "\(file.path): \(uninstall ? "removed" : "set") \(changed.joined(separator: ", "))")
                }
                return
            }
            guard let repo = GitRepository.discover(from: options.cwd), let top = repo.workTree else {
                throw StoreError(.notFound, "\(options.cwd) is not in a git working tree", hint: "run `git init` first, or use `trove install --global`")
            }
            if uninstall {
                let r = try GitInstall.uninstall(repo)
                if FileIO.exists(repo.storeRoot + "/config") {
                    let store = try Store.open(root: repo.storeRoot, workTree: top)
                    try store.setConfig(GitMode.enabledKey, nil)
                }
                if !options.quiet {
                    Console.out("Trove uninstalled from \(top): config \(r.configChanged.isEmpty ? "unchanged" : "removed " + r.configChanged.joined(separator: ", "))")
                    if !r.hooksRemoved.isEmpty { Console.out("  removed hooks: \(r.hooksRemoved.joined(separator: ", "))") }
                    if !r.hooksRestored.isEmpty { Console.out("  restored the hooks Trove chained: \(r.hooksRestored.joined(separator: ", "))") }
                    if !r.hooksLeft.isEmpty { Console.out("  left alone (changed since install): \(r.hooksLeft.joined(separator: ", "))") }
                    Console.out("The store \(repo.storeRoot) is kept; delete it to drop the artifacts.")
                }
                return
            }
            let store: Store
            if FileIO.exists(repo.storeRoot + "/config") {
                store = try Store.open(root: repo.storeRoot, workTree: top)
            } else {
                store = try Store.initialize(root: repo.storeRoot, workTree: top)
            }
            if store.config[GitMode.enabledKey] != "true" { try store.setConfig(GitMode.enabledKey, "true") }
            let r = try GitInstall.install(repo)
            guard !options.quiet else { return }
            Console.out("Trove installed in \(top) (store \(store.root))")
            if !r.configChanged.isEmpty { Console.out("  git config: \(r.configChanged.joined(separator: ", "))") }
            if !r.hooksWritten.isEmpty { Console.out("  hooks in \(r.hooksDirectory): \(r.hooksWritten.joined(separator: ", "))") }
            if !r.hooksChained.isEmpty { Console.out("  chained in front of your hooks: \(r.hooksChained.joined(separator: ", "))") }
            if r.configChanged.isEmpty && r.hooksWritten.isEmpty && r.hooksChained.isEmpty { Console.out("  already installed: nothing changed") }
        }
    }

    struct Track: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Route paths through Trove (.gitattributes), or list the patterns.",
            discussion: """
                Adds `PATTERN filter=trove diff=trove merge=trove -text` to .gitattributes at the \
                top of the working tree. Files already committed under a new pattern stay as they \
                are until `git add --renormalize .`. Without PATTERN, lists the tracked patterns.
                """)
        @Argument(help: "gitattributes patterns: '*.safetensors', 'models/**', 'data/*.parquet'.") var patterns: [String] = []
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            if patterns.isEmpty {
                let list = GitAttributes.trackedPatterns(top: git.top)
                if json { try Console.json(["patterns": list]); return }
                Console.out(list.isEmpty ? "No patterns are tracked (add one: trove track '*.bin')" : "Tracked patterns (.gitattributes):")
                for p in list { Console.out("    \(p)") }
                return
            }
            let added = try GitAttributes.track(patterns, top: git.top)
            if json { try Console.json(["added": added]); return }
            if options.quiet { return }
            for p in added { Console.out("Tracking \(p)") }
            for p in patterns where !added.contains(p) && !added.contains(p.replacingOccurrences(of: " ", with: "[[:space:]]")) {
                Console.out("\(p) was already tracked")
            }
            if !added.isEmpty { Console.out("Commit .gitattributes; files committed before under these patterns need `git add --renormalize .`") }
        }
    }

    struct Untrack: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop routing patterns through Trove (.gitattributes).")
        @Argument(help: "Patterns as `trove track` lists them.") var patterns: [String]
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            let removed = try GitAttributes.untrack(patterns, top: git.top)
            if options.quiet { return }
            for p in removed { Console.out("Untracking \(p)") }
            for p in patterns where !removed.contains(p) && !removed.contains(p.replacingOccurrences(of: " ", with: "[[:space:]]")) {
                Console.err("trove: \(p) was not tracked")
            }
        }
    }

    struct LsFiles: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls-files",
            abstract: "List the files a git revision tracks with Trove.",
            discussion: """
                One line per pointer in REV's tree: whether the content is in the local store \
                (`*` yes, `-` no), whether the working-tree file holds the content or is still a \
                pointer, the size, the id (the LFS oid) and the path.
                """)
        @Argument(help: "A git revision (default: HEAD).") var rev = "HEAD"
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            guard let commit = git.repo.resolveCommit(rev) else {
                throw StoreError(.notFound, "\(rev) is not a git revision here", hint: "see `git log`")
            }
            let pointers = try GitSnapshots(repo: git.repo, store: git.store).pointers(of: commit)
            let stillPointers = git.pointerFiles(pointers)
            var rows: [[String: Any]] = []
            for (path, p) in pointers.sorted(by: { $0.key < $1.key }) {
                let present = try git.isComplete(p)
                let state = stillPointers[path] != nil ? "pointer" : FileIO.exists(git.top + "/" + path) ? "materialised" : "absent"
                rows.append(["path": path, "oid": p.oid.hex, "size": p.size, "present": present, "worktree": state])
            }
            if json { try Console.json(["rev": rev, "commit": commit.hex, "files": rows]); return }
            for r in rows {
                let p = r["present"] as! Bool
                Console.out("\(p ? "*" : "-") \(String(describing: r["worktree"]!).padding(toLength: 12, withPad: " ", startingAt: 0)) \(Format.bytes(r["size"] as! UInt64).padding(toLength: 10, withPad: " ", startingAt: 0)) \(String((r["oid"] as! String).prefix(12)))  \(r["path"]!)")
            }
        }
    }

    struct FilterProcessCmd: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "filter-process",
            abstract: "git's long-running filter (filter.trove.process); git starts it.",
            discussion: """
                Speaks git's filter protocol version 2 on standard input and output (clean, smudge, \
                delay). TROVE_SKIP_SMUDGE=1 checks out pointers instead of content. Content missing \
                from the store is fetched from the Trove remote of the current branch's git remote.
                """,
            shouldDisplay: false)
        @OptionGroup var options: StoreOptions

        func run() throws {
            signal(SIGPIPE, SIG_IGN)
            let git = try GitMode.require(options, autoInstall: true)
            let lock = try git.store.lock()
            defer { _ = lock }
            let progress = TerminalProgress.make(quiet: options.quiet)
            let filter = FilterProcess(store: git.store) { items in
                _ = try git.fetch(items.map { ($0.path, $0.pointer) }, progress: progress)
            }
            let env = ProcessInfo.processInfo.environment
            filter.skipSmudge = ["1", "true", "yes"].contains(env["TROVE_SKIP_SMUDGE"] ?? "")
            filter.sparse = (try? PathFilter.load(store: git.store.root)) ?? .all
            // Small files are stored beside git only where the files stay in the working tree.
            filter.storeInBackground = GitInvocation.keepsWorkTree()
            // Large files are written by Trove itself when git is done, if the git command
            // writes the working tree (Docs/git.md §Large files).
            let configured = git.store.config["git.defer-min"].flatMap { UInt64($0) } ?? (8 << 20)
            let wanted = env["TROVE_DEFER"].map { $0 != "0" } ?? GitInvocation.writesWorkTree()
            if wanted, configured > 0, !filter.skipSmudge {
                filter.deferMinimum = configured
                filter.onFinish = { files in
                    try git.materialise(git.pointerFiles(files), progress: progress, indexRequired: false)
                }
            }
            try filter.run()
        }
    }

    struct TextConv: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "textconv",
            abstract: "One-line summary of a tracked file for `git diff` (diff.trove.textconv).",
            shouldDisplay: false)
        @Argument(help: "The file git hands over (a pointer, or content not yet stored).") var file: String

        func run() throws {
            // git hands over the working-tree form: the content (hashed: its id is the oid), or
            // the pointer when the content was not checked out.
            let size = FileIO.fileSize(file) ?? 0
            if size < LFSPointer.sizeLimit, let bytes = try? FileIO.readFile(file), let p = try? LFSPointer.parse(bytes) {
                Console.out("trove \(p.oid.short()) \(Format.bytes(p.size)) (\(p.size) bytes; pointer, content not checked out)")
                return
            }
            Console.out("trove \(try Worktree.hashFile(file).short()) \(Format.bytes(size)) (\(size) bytes)")
        }
    }

    struct Hook: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What Trove's git hooks run (pre-push, post-checkout, post-merge, post-commit).",
            shouldDisplay: false)
        @Argument(help: "The hook.") var name: String
        @Argument(parsing: .allUnrecognized, help: "git's arguments to the hook.") var arguments: [String] = []
        @OptionGroup var options: StoreOptions

        func run() throws {
            guard let git = try GitMode.detect(options) else { return }  // uninstalled: hooks do nothing
            let env = ProcessInfo.processInfo.environment
            let skip = ["1", "true", "yes"].contains(env["TROVE_SKIP_SMUDGE"] ?? "")
            switch name {
            case "pre-push":
                var items: [(local: GitOID, remoteRef: String, remoteOld: GitOID?)] = []
                while let line = readLine() {
                    let f = line.split(separator: " ").map(String.init)
                    guard f.count == 4 else { continue }
                    guard let local = GitOID(hex: f[1]), !local.isZero else { continue }  // deletions carry nothing
                    items.append((local, f[2], GitOID(hex: f[3])))
                }
                guard !items.isEmpty else { return }
                let remoteName = arguments.first
                // A git remote Trove cannot follow (an HTTP git host, no Trove remote set) is
                // fine for commits that track nothing: only artifacts need a Trove remote.
                do { _ = try git.troveRemote(remoteName) } catch let e as StoreError where e.code == .notFound {
                    if try items.allSatisfy({ try git.tracksNothing(git.snapshot(of: $0.local)) }) { return }
                    throw e
                }
                do {
                    let (r, remote) = try git.push(items, remote: remoteName, progress: options.progress)
                    if !options.quiet, r.sent.objects > 0 {
                        Console.err("trove: sent \(r.sent.objects) object(s), \(Format.bytes(r.sent.bytes)) to \(remote)")
                    }
                } catch {
                    Console.err("trove: the artifacts of this push could not be sent to the Trove remote, so git push is stopped (nothing was pushed to git).")
                    throw error
                }
            case "post-checkout", "post-merge":
                if name == "post-checkout", arguments.count >= 3, arguments[2] == "0" { return }  // a file checkout
                guard !skip, let head = git.repo.resolveCommit("HEAD") else { return }
                try materialiseWorktree(git, commit: head)
            case "post-commit":
                guard let head = git.repo.resolveCommit("HEAD") else { return }
                let s = try git.snapshot(of: head)
                if let branch = git.repo.currentBranch() {
                    let refs = git.store.refs
                    let old = try refs.read("heads/\(branch)")
                    if old != s { try refs.update("heads/\(branch)", from: old, to: s, message: "git commit \(head.hex.prefix(12))", force: true) }
                    if try refs.branchName() != branch { try refs.setHead(.branch("heads/\(branch)"), message: "git checkout \(branch)") }
                }
            default:
                throw StoreError(.invalidInput, "no hook \(name)", hint: "hooks: \(HookScripts.names.joined(separator: ", "))")
            }
        }

        func materialiseWorktree(_ git: GitMode, commit: GitOID) throws {
            let all = try GitSnapshots(repo: git.repo, store: git.store).pointers(of: commit)
            let sparse = (try? PathFilter.load(store: git.store.root)) ?? .all
            let files = git.pointerFiles(all).filter { sparse.includes($0.key) }
            guard !files.isEmpty else { return }
            _ = try git.fetch(files.map { ($0.key, $0.value) }, progress: options.progress)
            // Checked again after the fetch: a file edited meanwhile is not a pointer any more.
            try git.materialise(git.pointerFiles(files), progress: options.progress)
        }
    }
}

extension TroveCommand {
    struct ImportLFS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-lfs",
            abstract: "Move a Git LFS repository's content into Trove, without rewriting history.",
            discussion: """
                Stores every object of .git/lfs/objects in the Trove store (each checked against its \
                SHA-256 name; a damaged one is reported and left alone), switches .gitattributes \
                lines from filter=lfs to filter=trove (commit that change), and keeps git-lfs's own \
                hooks aside (export-lfs puts them back). Pointers are the same bytes in both tools, \
                so no commit changes. .git/lfs/objects is left in place: delete it once pushed.
                """)
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            let r = try LFSMigration.importLFS(repo: git.repo, store: git.store, progress: options.progress)
            if json {
                try Console.json(["objects": r.objects, "bytes": r.bytes, "corrupt": r.corrupt, "gitattributes_lines": r.attributeLines, "lfs_hooks": r.hooks])
            } else if !options.quiet {
                Console.out("Imported \(r.objects) object(s) (\(Format.bytes(r.bytes))) from \(LFSMigration.objectsDirectory(git.repo))")
                Console.out("  .gitattributes: \(r.attributeLines) line(s) now filter=trove; commit the change")
                if !r.hooks.isEmpty { Console.out("  git-lfs hooks set aside: \(r.hooks.joined(separator: ", "))") }
            }
            if !r.corrupt.isEmpty {
                Console.err("trove: \(r.corrupt.count) LFS object(s) do not match their name and were not imported: \(r.corrupt.prefix(5).joined(separator: ", "))")
                throw CommandFailed(code: TroveCLI.ExitStatus.integrity)
            }
        }
    }

    struct ExportLFS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-lfs",
            abstract: "Hand a repository back to Git LFS: content into .git/lfs/objects.",
            discussion: """
                Writes the content of every pointer in the history of the local branches and tags \
                into .git/lfs/objects (what the store has; missing content is listed), switches \
                .gitattributes back to filter=lfs and restores the git-lfs hooks import-lfs set \
                aside. Run `trove install --uninstall` afterwards to drop Trove's hooks.
                """)
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let git = try GitMode.require(options)
            let r = try LFSMigration.exportLFS(repo: git.repo, store: git.store, progress: options.progress)
            if json {
                try Console.json(["objects": r.objects, "bytes": r.bytes, "missing": r.missing, "gitattributes_lines": r.attributeLines, "lfs_hooks": r.hooks])
            } else if !options.quiet {
                Console.out("Exported \(r.objects) object(s) (\(Format.bytes(r.bytes))) to \(LFSMigration.objectsDirectory(git.repo))")
                Console.out("  .gitattributes: \(r.attributeLines) line(s) now filter=lfs; commit the change")
                if !r.hooks.isEmpty { Console.out("  git-lfs hooks restored: \(r.hooks.joined(separator: ", "))") }
            }
            if !r.missing.isEmpty {
                Console.err("trove: the store lacks the content of \(r.missing.count) pointer(s): \(r.missing.prefix(5).joined(separator: ", "))")
                Console.err("hint: fetch the content of older revisions first: `trove fetch origin REV...`")
                throw CommandFailed(code: TroveCLI.ExitStatus.notFound)
            }
        }
    }
}

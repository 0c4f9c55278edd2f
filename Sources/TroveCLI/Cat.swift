import ArgumentParser
import Glibc
import TroveStore

extension TroveCommand {
    struct Cat: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stream a file of a commit to stdout (REV:PATH), verifying every chunk.")

        @Argument(help: "REV:PATH") var target: String
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            let lock = try store.lock()
            defer { _ = lock }
            let (rev, path) = Store.splitRevisionPath(target)
            guard let path, !path.isEmpty else { throw StoreError(.invalidInput, "cat needs REV:PATH, e.g. HEAD:model.bin") }
            let e = try store.entry(at: path, inCommit: try store.resolve(rev.isEmpty ? "HEAD" : rev))
            guard e.kind != .directory else { throw StoreError(.invalidInput, "\(path) is a folder; use `trove ls \(target)`") }
            try Materializer.stream(store: store, blob: e.id, to: STDOUT_FILENO)
        }
    }
}

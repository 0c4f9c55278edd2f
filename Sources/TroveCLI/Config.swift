import ArgumentParser
import TroveStore

extension TroveCommand {
    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read or change store settings.",
            discussion: "Keys:\n" + StoreConfig.known.map { "  \($0.name)\($0.immutable ? " (fixed at init)" : ""): \($0.help)" }.joined(separator: "\n")
                + "\n  alternates: other stores to read objects from, one path per line in STORE/alternates")

        @Argument(help: "The key (none: list all).") var key: String?
        @Argument(help: "A new value.") var value: String?
        @Flag(help: "Remove the key.") var unset = false
        @Flag(help: "Print as JSON.") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            let store = try options.openStore()
            guard let key else {
                var all: [String: String] = [:]
                for k in StoreConfig.known { if let v = store.config[k.name] { all[k.name] = v } }
                for (k, v) in store.config.values { all[k] = v }
                if json { try Console.json(all); return }
                for k in all.keys.sorted() { Console.out("\(k) = \(all[k]!)") }
                return
            }
            if unset { try store.setConfig(key, nil); return }
            if let value { try store.setConfig(key, value); return }
            guard let v = store.config[key] else { throw StoreError(.notFound, "config key \(key) is not set") }
            Console.out(v)
        }
    }
}

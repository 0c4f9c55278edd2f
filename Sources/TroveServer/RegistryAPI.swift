import Foundation
import Hummingbird
import NIOCore
import TroveCore
import TroveProtocol
import TroveRuns
import TroveStore

/// The model zoo and datasets in the JSON API (Docs/api.md §Registry): lists, a name's
/// versions, a version with its files, card and lineage. Read role; the same rules as every
/// `/api/v1` route.
struct RegistryAPI: Sendable {
    let api: APIController

    func addRoutes(to router: Router<BasicRequestContext>) {
        let v1 = router.group("api/v1")
        v1.get("projects/{project}/registry") { req, ctx in
            await api.project("registry", req, ctx, .read) { _, p in try list(req, p) }
        }
        v1.get("projects/{project}/registry/{name}") { req, ctx in
            await api.project("registry", req, ctx, .read) { _, p in try versions(req, ctx, p) }
        }
        v1.get("projects/{project}/registry/{name}/versions/{version}") { req, ctx in
            await api.project("registry", req, ctx, .read) { _, p in try version(req, ctx, p) }
        }
        v1.put("projects/{project}/registry/{name}/served/{instance}") { req, ctx in
            await api.project("served", req, ctx, .write) { _, p in try await announce(req, ctx, p) }
        }
        v1.delete("projects/{project}/registry/{name}/served/{instance}") { req, ctx in
            await api.project("served", req, ctx, .write) { _, p in
                try p.served.withdraw(try instance(ctx, try name(ctx)))
                return json(["withdrawn": true])
            }
        }
    }

    /// An announcement's key: NAME/INSTANCE, the instance 1–128 characters of [A-Za-z0-9._-].
    func instance(_ ctx: BasicRequestContext, _ name: String) throws -> String {
        let i = ctx.parameters.get("instance") ?? ""
        guard (1...128).contains(i.count), i.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            throw ProtocolError(.invalidInput, "\(i.debugDescription) is not an instance name (1–128 of A-Z a-z 0-9 . _ -)")
        }
        return name + "/" + i
    }

    /// `PUT …/registry/NAME/served/INSTANCE` with a `ServingRecord` (its name is the route's).
    func announce(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) async throws -> Response {
        let n = try name(ctx)
        let key = try instance(ctx, n)
        let body = Array(buffer: try await req.body.collect(upTo: 16 << 10))
        guard var r = try? JSONDecoder().decode(ServingRecord.self, from: Data(body)),
              r.url.hasPrefix("http://") || r.url.hasPrefix("https://"), r.url.count <= 2048 else {
            throw ProtocolError(.invalidInput, "an announcement is {\"name\", \"version\", \"url\": \"http(s)://…\", \"host\", \"pid\", \"workers\", \"started\"}")
        }
        guard try Registry(store: p.store, kind: .model).versions(n).contains(where: { $0.version == r.version }) else {
            throw ProtocolError(.notFound, "no model \(n)@v\(r.version) in project \(p.name)", hint: "push the version before serving it from here")
        }
        r.name = n
        r.host = String(r.host.prefix(256))
        try p.served.announce(key, .init(record: r, seen: Date()))
        return json(["ttl": ServedEndpoints.ttl])
    }

    static func served(_ list: [ServedEndpoints.Entry]) -> [[String: Any]] {
        list.map { e in
            let r = e.record
            return ["version": r.version, "url": r.url, "host": r.host, "workers": r.workers, "started": r.started, "seen": Int64(e.seen.timeIntervalSince1970)]
        }
    }

    func registry(_ req: Request, _ p: ProjectView) throws -> Registry {
        let kind = req.uri.queryParameters["kind"].map(String.init) ?? "model"
        guard let k = Registry.Kind(rawValue: kind) else { throw ProtocolError(.invalidInput, "kind must be model or dataset") }
        return Registry(store: p.store, kind: k)
    }

    func name(_ ctx: BasicRequestContext) throws -> String {
        let n = ctx.parameters.get("name") ?? ""
        do { try Registry.validate(name: n) } catch { throw ProtocolError(.invalidInput, "\(n.debugDescription) is not a model or dataset name") }
        return n
    }

    /// The first line of a version's card that is text (not a heading mark), for lists.
    func cardLine(_ r: Registry, _ commit: ObjectID) -> String {
        guard let e = try? r.store.flatten(tree: try r.store.commit(commit).tree)["README.md"],
              let bytes = try? Materializer.readBlob(store: r.store, blob: e.id) else { return "" }
        return String(decoding: bytes.prefix(4096), as: UTF8.self).split(separator: "\n")
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "# \t")) }.first { !$0.isEmpty }.map { String($0.prefix(200)) } ?? ""
    }

    func list(_ req: Request, _ p: ProjectView) throws -> Response {
        let r = try registry(req, p)
        let q = req.uri.queryParameters["q"].map { String($0).lowercased() } ?? ""
        var items: [[String: Any]] = []
        for n in try r.names() {
            let versions = try r.versions(n)
            guard let last = versions.last else { continue }
            let description = cardLine(r, last.commit)
            guard q.isEmpty || n.lowercased().contains(q) || description.lowercased().contains(q) else { continue }
            items.append(["name": n, "kind": r.kind.rawValue, "latest": last.version, "versions": versions.count,
                          "aliases": aliases(r, n, versions), "deprecated": try r.deprecations(n).keys.sorted(),
                          "time": try r.store.commit(last.commit).time, "description": description])
        }
        return json(["items": items])
    }

    func aliases(_ r: Registry, _ name: String, _ versions: [(version: Int, commit: ObjectID)]) -> [String: Int] {
        Dictionary(((try? r.aliases(name)) ?? []).compactMap { a in versions.first { $0.commit == a.commit }.map { (a.alias, $0.version) } }, uniquingKeysWith: { x, _ in x })
    }

    func versions(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let r = try registry(req, p)
        let n = try name(ctx)
        let versions = try r.versions(n)
        guard !versions.isEmpty else { throw ProtocolError(.notFound, "no \(r.kind) \(n) in project \(p.name)") }
        let al = aliases(r, n, versions)
        let deprecated = try r.deprecations(n)
        let rows = try versions.reversed().map { v -> [String: Any] in
            let c = try r.store.commit(v.commit)
            let m = Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            return ["version": v.version, "commit": v.commit.hex, "time": c.time, "author": c.author,
                    "served": r.kind == .model ? Self.served(try p.served.list(n, version: v.version)) : [],
                    "message": c.message.split(separator: "\n").first.map(String.init) ?? "",
                    "aliases": al.filter { $0.value == v.version }.map(\.key).sorted(), "deprecated": deprecated[v.version] as Any? ?? NSNull(),
                    "run": m["registry.run"] as Any? ?? NSNull(), "files": Int(m["registry.files"] ?? "") ?? 0, "bytes": Int(m["registry.bytes"] ?? "") ?? 0]
        }
        return json(["name": n, "kind": r.kind.rawValue, "aliases": al, "versions": rows])
    }

    func version(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let r = try registry(req, p)
        let n = try name(ctx)
        let raw = ctx.parameters.get("version") ?? ""
        let selector = raw.hasPrefix("v") || Int(raw) == nil ? raw : "v" + raw
        let (_, version, commit): (String, Int, ObjectID)
        do { (_, version, commit) = try r.resolve(n + "@" + selector) } catch let e as StoreError {
            throw ProtocolError(.notFound, e.message, hint: e.hint)
        }
        let c = try r.store.commit(commit)
        let m = Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let files = try r.store.flatten(tree: c.tree).sorted { $0.key < $1.key }
        let card = try files.first { $0.key == "README.md" }.map { String(decoding: try Materializer.readBlob(store: r.store, blob: $0.value.id), as: UTF8.self) }
        let lineage = try r.lineage("\(n)@v\(version)").map(\.json)
        let versions = try r.versions(n)
        return json([
            "name": n, "kind": r.kind.rawValue, "version": version, "commit": commit.hex, "time": c.time, "author": c.author,
            "message": c.message.split(separator: "\n").first.map(String.init) ?? "",
            "metadata": m.filter { $0.key.hasPrefix("meta.") }.reduce(into: [String: String]()) { $0[String($1.key.dropFirst(5))] = $1.value },
            "aliases": aliases(r, n, versions).filter { $0.value == version }.map(\.key).sorted(),
            "deprecated": try r.deprecations(n)[version] as Any? ?? NSNull(), "run": m["registry.run"] as Any? ?? NSNull(),
            "files": files.map { ["path": $0.key, "size": $0.value.size] }, "card": card as Any? ?? NSNull(),
            "lineage": lineage, "served": r.kind == .model ? Self.served(try p.served.list(n, version: version)) : [],
        ])
    }
}

/// Where a project's model versions are served (Docs/registry.md §Where it is served): each
/// `trove serve` with this daemon as a remote announces itself every `announceInterval`
/// seconds and withdraws on a clean stop; an announcement not renewed within `ttl` seconds
/// (the server was killed, or its node went away) is no longer shown. Held in memory: after a
/// daemon restart the next announcements fill it again.
final class ServedEndpoints: @unchecked Sendable {
    struct Entry: Codable, Sendable {
        var record: ServingRecord
        var seen: Date
    }

    static let ttl = 90.0
    static let maxEntries = 10_000
    let project: String
    /// In memory for one daemon; in PostgreSQL for replicas (any of them lists every endpoint).
    let documents: Documents

    init(project: String, documents: Documents) {
        self.project = project
        self.documents = documents
    }

    func announce(_ instance: String, _ entry: Entry) throws {
        if try documents.get(project, "served/" + instance) == nil, try documents.count(project, prefix: "served/") >= Self.maxEntries {
            throw ProtocolError(.tooLarge, "the daemon already lists \(Self.maxEntries) served endpoints")
        }
        try documents.put(project, "served/" + instance, Array(try JSONEncoder().encode(entry)), ttl: Self.ttl)
    }

    func withdraw(_ instance: String) throws { try documents.delete(project, "served/" + instance) }

    /// The live announcements of NAME (of one version, when given), oldest first.
    func list(_ name: String, version: Int? = nil) throws -> [Entry] {
        try documents.list(project, prefix: "served/" + name + "/").compactMap { try? JSONDecoder().decode(Entry.self, from: Data($0.value)) }
            .filter { $0.record.name == name && (version == nil || $0.record.version == version) }
            .sorted { ($0.record.started, $0.record.url) < ($1.record.started, $1.record.url) }
    }
}

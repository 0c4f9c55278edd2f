import Foundation
import ServiceLifecycle
import Hummingbird
import NIOCore
import TroveCore
import TroveProtocol
import TroveRuns
import TroveStore
import TroveSync

/// The JSON API under `/api/v1` (Docs/api.md, Docs/openapi.yaml): what the web UI uses and
/// nothing else. Every route checks the caller (token or session + CSRF) and its role first.
struct APIController: Sendable {
    let state: DaemonState

    func addRoutes(to router: Router<BasicRequestContext>) {
        let v1 = router.group("api/v1")
        v1.post("session") { req, _ in await respond("session") { try await login(req) } }
        v1.get("session") { req, _ in
            await respond("session") {
                let c = try state.caller(req, project: nil, role: .read)
                return json(sessionJSON(c))
            }
        }
        v1.delete("session") { req, _ in
            await respond("session") {
                let c = try state.caller(req, project: nil, role: .read)
                if let s = c.session { state.sessions.remove(s.id) }
                var r = Response(status: .noContent)
                r.headers[.setCookie] = "\(SessionStore.cookie)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
                return r
            }
        }
        v1.get("projects") { req, _ in
            await respond("projects") {
                let c = try state.caller(req, project: nil, role: .read)
                let desc = try state.projects.setting(c.project, "project.description") ?? ""
                let list: [[String: Any]] = try state.projects.service(c.project) == nil ? [] : [["name": c.project, "description": desc, "role": "\(c.role)"]]
                return json(["projects": list])
            }
        }
        v1.get("projects/{project}") { req, ctx in
            await project("project", req, ctx, .read) { c, p in try projectJSON(c, p) }
        }
        v1.get("projects/{project}/refs") { req, ctx in
            await project("refs", req, ctx, .read) { _, p in
                let prefix = req.uri.queryParameters["prefix"].map(String.init) ?? ""
                return json(["refs": try p.store.refs.list(prefix: prefix).map { ["name": $0.name, "commit": $0.id.hex] }])
            }
        }
        v1.get("projects/{project}/commits") { req, ctx in
            await project("commits", req, ctx, .read) { _, p in try commits(req, p) }
        }
        v1.get("projects/{project}/commits/{rev}") { req, ctx in
            await project("commit", req, ctx, .read) { _, p in
                let id = try p.store.resolve(try rev(ctx))
                return json(commitJSON(id, try p.store.commit(id)))
            }
        }
        v1.get("projects/{project}/tree/{rev}") { req, ctx in
            await project("tree", req, ctx, .read) { _, p in try tree(req, ctx, p) }
        }
        v1.get("projects/{project}/file/{rev}") { req, ctx in
            await project("file", req, ctx, .read) { _, p in try file(req, ctx, p) }
        }
        v1.get("projects/{project}/runs") { req, ctx in
            await project("runs", req, ctx, .read) { _, p in try runs(req, p) }
        }
        v1.get("projects/{project}/runs/{run}") { req, ctx in
            await project("run", req, ctx, .read) { _, p in try runDetail(try runID(ctx), p) }
        }
        v1.get("projects/{project}/runs/{run}/metrics/{metric}") { req, ctx in
            await project("metric", req, ctx, .read) { _, p in try metric(req, ctx, p) }
        }
        v1.get("projects/{project}/runs/{run}/logs") { req, ctx in
            await project("logs", req, ctx, .read) { _, p in try logs(req, ctx, p) }
        }
        v1.get("projects/{project}/runs/{run}/diff") { req, ctx in
            await project("diff", req, ctx, .read) { _, p in
                let id = try runID(ctx)
                guard let r = try p.catalog.run(id), let e = try p.store.flatten(tree: try p.store.commit(r.commit).tree)["code.diff"] else {
                    throw ProtocolError(.notFound, "run \(id) has no recorded diff (its code was clean, or it is still running)")
                }
                return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(bytes: try Materializer.readBlob(store: p.store, blob: e.id))))
            }
        }
        v1.post("projects/{project}/runs/{run}/cancel") { req, ctx in
            await project("cancel", req, ctx, .write) { _, p in try await cancel(req, ctx, p) }
        }
        v1.post("projects/{project}/runs/{run}/live") { req, ctx in
            await project("live", req, ctx, .write) { _, p in try await liveUpdate(req, ctx, p) }
        }
        v1.get("projects/{project}/sweeps") { req, ctx in
            await project("sweeps", req, ctx, .read) { _, p in json(["sweeps": try sweeps(p, limit: nil)]) }
        }
        v1.get("projects/{project}/sweeps/{sweep}") { req, ctx in
            await project("sweep", req, ctx, .read) { _, p in try sweep(ctx, p) }
        }
        v1.get("projects/{project}/members") { req, ctx in
            await project("members", req, ctx, .admin) { c, _ in
                let list = try state.tokens.list().filter { $0.project == c.project }
                return json(["members": list.map { ["id": $0.id, "role": "\($0.role)", "created": $0.created, "expires": $0.expires] }])
            }
        }
        v1.post("projects/{project}/members") { req, ctx in
            await project("members", req, ctx, .admin) { c, _ in
                let body = try await jsonBody(req)
                guard let role = (body["role"] as? String).flatMap(Role.init(name:)) else {
                    throw ProtocolError(.invalidInput, "role must be read, write or admin")
                }
                let expires = try (body["expires_in"] as? String).map { text -> Int64 in
                    guard let s = parseDuration(text) else { throw ProtocolError(.invalidInput, "expires_in \(text.debugDescription) is not a duration like 30d or 12h") }
                    return s
                }
                let (token, e) = try state.tokens.create(project: c.project, role: role, expiresIn: expires)
                return json(["id": e.id, "role": "\(e.role)", "token": token, "expires": e.expires], status: .created)
            }
        }
        v1.delete("projects/{project}/members/{member}") { req, ctx in
            await project("members", req, ctx, .admin) { c, _ in
                let id = ctx.parameters.get("member") ?? ""
                guard try state.tokens.list().contains(where: { $0.id == id && $0.project == c.project }), try state.tokens.revoke(id) else {
                    throw ProtocolError(.notFound, "no member \(id) in project \(c.project)")
                }
                return Response(status: .noContent)
            }
        }
        v1.get("projects/{project}/events") { req, ctx in
            await project("events", req, ctx, .read) { _, p in events(p) }
        }
    }

    // MARK: plumbing

    static func noProject(_ name: String) -> ProtocolError {
        ProtocolError(.notFound, "no project \(name) here, or the token is not for it", hint: "log in with a token of that project")
    }

    /// Answers errors as JSON, and counts every request.
    func respond(_ route: String, _ body: () async throws -> Response) async -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        var response: Response
        do { response = try await body() } catch { response = APIController.errorResponse(error) }
        state.metrics.request(route: "api-" + route, status: Int(response.status.code), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }

    func project(_ route: String, _ req: Request, _ ctx: BasicRequestContext, _ role: Role,
                 _ body: @escaping @Sendable (Caller, ProjectView) async throws -> Response) async -> Response {
        await respond(route) {
            let name = ctx.parameters.get("project") ?? ""
            let c = try state.caller(req, project: name, role: role)
            guard let view = try state.views.view(name) else { throw APIController.noProject(name) }
            return try await body(c, view)
        }
    }

    static func errorResponse(_ error: Error) -> Response {
        let status: HTTPResponse.Status
        var code: String
        var message: String
        var hint: String?
        var headers: HTTPFields = [.contentType: "application/json"]
        switch error {
        case APIError.csrf:
            (status, code, message, hint) = (.forbidden, "csrf", "the request has no valid X-CSRF-Token header", "reload the page")
        case APIError.range(let size):
            (status, code, message) = (.rangeNotSatisfiable, "range", "the requested range is outside the file (\(size) bytes)")
            headers[.contentRange] = "bytes */\(size)"
        default:
            let e: ProtocolError
            if let pe = error as? ProtocolError { e = pe } else if let he = error as? HTTPError, he.status == .contentTooLarge {
                e = ProtocolError(.tooLarge, "the request body is too large")
            } else { e = ProtocolError.from(error) }
            (message, hint) = (e.message, e.hint)
            switch e.code {
            case .invalidInput, .unsupportedVersion: (status, code) = (.badRequest, "invalid_input")
            case .unauthorized: (status, code) = (.unauthorized, "unauthorized")
            case .forbidden: (status, code) = (.forbidden, "forbidden")
            case .notFound: (status, code) = (.notFound, "not_found")
            case .conflict: (status, code) = (.conflict, "conflict")
            case .tooLarge: (status, code) = (.contentTooLarge, "too_large")
            case .integrity, .io, .general: (status, code) = (.internalServerError, "internal")
            case .unavailable: (status, code) = (.serviceUnavailable, "unavailable")
            }
        }
        var err: [String: Any] = ["code": code, "message": message]
        if let hint { err["hint"] = hint }
        let data = (try? JSONSerialization.data(withJSONObject: ["error": err])) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func rev(_ ctx: BasicRequestContext) throws -> String {
        let raw = ctx.parameters.get("rev") ?? ""
        let r = raw.removingPercentEncoding ?? raw
        return r == "HEAD" ? "heads/main" : r
    }

    func runID(_ ctx: BasicRequestContext) throws -> String {
        let id = ctx.parameters.get("run") ?? ""
        guard (try? Refs.validate("runs/" + id)) != nil, !id.contains("/") else { throw ProtocolError(.invalidInput, "\(id.debugDescription) is not a run id") }
        return id
    }

    /// A path given by the client: relative, `/`-separated, never `..`, `.` or empty parts.
    static func cleanPath(_ text: String?) throws -> String {
        guard let text, !text.isEmpty else { return "" }
        let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
        let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
        guard !trimmed.hasPrefix("/"), parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }), !trimmed.contains("\0") else {
            throw ProtocolError(.invalidInput, "path \(text.debugDescription) is not a clean relative path", hint: "no '..', '.', empty parts or leading '/'")
        }
        return trimmed
    }

    func jsonBody(_ req: Request, limit: Int = 1 << 20) async throws -> [String: Any] {
        let buf = try await req.body.collect(upTo: limit)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(buffer: buf)) as? [String: Any] else {
            throw ProtocolError(.invalidInput, "the request body must be a JSON object")
        }
        return obj
    }

    // MARK: session

    func login(_ req: Request) async throws -> Response {
        let body = try await jsonBody(req, limit: 16 << 10)
        guard let token = body["token"] as? String, !token.isEmpty else { throw ProtocolError(.invalidInput, "give {\"token\": \"trv_...\"}") }
        guard let entry = try state.tokens.verify(token) else {
            throw ProtocolError(.unauthorized, "the token is unknown, expired or revoked", hint: "ask the daemon's admin for a new one")
        }
        let s = try state.sessions.create(token: token)
        var r = json(sessionJSON(Caller(project: entry.project, role: entry.role, session: s)))
        let secure = state.config.tlsCertificate != nil ? "; Secure" : ""
        r.headers[.setCookie] = "\(SessionStore.cookie)=\(s.id); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(SessionStore.lifetime))\(secure)"
        return r
    }

    func sessionJSON(_ c: Caller) -> [String: Any] {
        ["project": c.project, "role": "\(c.role)", "csrf": c.session?.csrf ?? NSNull()]
    }

    // MARK: projects, commits, files

    func projectJSON(_ c: Caller, _ p: ProjectView) throws -> Response {
        // Only the folders shown: a project's 10,000 run refs are not read for its page.
        func list(_ prefix: String) throws -> [[String: Any]] {
            try p.store.refs.list(prefix: prefix).map { ["name": $0.name, "commit": $0.id.hex] }
        }
        let all = try p.rows()
        return json([
            "name": p.name, "description": try state.projects.setting(p.name, "project.description") ?? "", "role": "\(c.role)",
            "branches": try list("heads/"), "tags": try list("tags/"),
            "runs": ["count": all.rows.count, "recent": all.rows.prefix(10).map { $0.json() }] as [String: Any],
            "sweeps": try sweeps(p, limit: 20),
        ])
    }

    func commitJSON(_ id: ObjectID, _ c: Commit) -> [String: Any] {
        ["id": id.hex, "kind": "\(c.kind)", "message": c.message, "author": c.author, "time": c.time,
         "parents": c.parents.map(\.hex), "tree": c.tree.hex, "git_commit": c.gitCommit,
         "metadata": Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })]
    }

    func commits(_ req: Request, _ p: ProjectView) throws -> Response {
        let q = req.uri.queryParameters
        let revText = q["rev"].map(String.init) ?? "heads/main"
        let start = try p.store.resolve(revText == "HEAD" ? "heads/main" : revText)
        let limit = min(max(Int(q["limit"].map(String.init) ?? "") ?? 50, 1), 1000)
        let path = try APIController.cleanPath(q["path"].map(String.init))
        var out: [[String: Any]] = []
        if path.isEmpty {
            out = try p.store.log(from: start, limit: limit, firstParent: true).map { commitJSON($0.id, $0.commit) }
        } else {
            // A file's history: the commits whose entry at `path` differs from their parent's.
            func at(_ id: ObjectID) -> ObjectID? { (try? p.store.entry(at: path, inCommit: id))?.id }
            for (id, c) in try p.store.log(from: start, limit: 5000, firstParent: true) {
                let mine = at(id)
                let parent = c.parents.first.flatMap(at)
                if mine != parent { out.append(commitJSON(id, c)) }
                if out.count >= limit { break }
            }
        }
        return json(["commits": out])
    }

    func tree(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let commit = try p.store.resolve(try rev(ctx))
        let path = try APIController.cleanPath(req.uri.queryParameters["path"].map(String.init))
        let e = try p.store.entry(at: path, inCommit: commit)
        guard e.kind == .directory else { throw ProtocolError(.invalidInput, "\(path) is a file, not a directory", hint: "use the file route") }
        let entries = try p.store.tree(e.id).entries.sorted { ($0.kind == .directory ? 0 : 1, $0.name) < ($1.kind == .directory ? 0 : 1, $1.name) }
        return json(["commit": commit.hex, "path": path, "entries": entries.map { x -> [String: Any] in
            ["name": x.name, "path": path.isEmpty ? x.name : path + "/" + x.name,
             "kind": x.kind == .directory ? "directory" : "\(x.kind)", "size": x.size, "id": x.id.hex]
        }])
    }

    /// A file's bytes, streamed chunk by chunk (each verified), with one `Range` honoured.
    func file(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let commit = try p.store.resolve(try rev(ctx))
        let path = try APIController.cleanPath(req.uri.queryParameters["path"].map(String.init))
        let e = try p.store.entry(at: path, inCommit: commit)
        guard e.kind != .directory else { throw ProtocolError(.invalidInput, "\(path.isEmpty ? "/" : path) is a directory", hint: "use the tree route") }
        var headers: HTTPFields = [:]
        if req.uri.queryParameters["download"] == "1" {
            let name = FileIO.basename(path).replacingOccurrences(of: "\"", with: "_").filter { $0.isASCII && !$0.isNewline }
            headers[.contentDisposition] = "attachment; filename=\"\(name)\"; filename*=UTF-8''\(FileIO.basename(path).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "file")"
        }
        return try BlobResponse.make(p.store, e, range: req.headers[.range], headers: headers, head: false)
    }

    // MARK: runs

    func runs(_ req: Request, _ p: ProjectView) throws -> Response {
        let q = req.uri.queryParameters
        let filters = try q[values: "filter"].map { try RunFilter.parse(String($0)) }
        let sort = q["sort"].map(String.init) ?? "-start"
        let limit = min(max(Int(q["limit"].map(String.init) ?? "") ?? 50, 1), 1000)
        var offset = 0
        if let c = q["cursor"], !c.isEmpty {
            guard c.hasPrefix("o"), let n = Int(c.dropFirst()), n >= 0 else { throw ProtocolError(.invalidInput, "the cursor \(c) is not one this daemon gave") }
            offset = n
        }
        let page = try p.page(filters: filters, query: q["q"].map(String.init), sort: sort, offset: offset, limit: limit)
        let next = offset + limit < page.total ? "o\(offset + limit)" : nil
        return json(["runs": page.rows.map { $0.json() }, "total": page.total, "next_cursor": next as Any? ?? NSNull(),
                     "columns": ["params": page.params, "metrics": page.metrics]])
    }

    func runDetail(_ id: String, _ p: ProjectView) throws -> Response {
        guard let row = try p.row(id) else { throw ProtocolError(.notFound, "no run \(id) in project \(p.name)") }
        var out = row.json()
        if let r = try p.catalog.run(id) {
            let c = try p.store.commit(r.commit)
            let m = Dictionary(c.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let files = try p.store.flatten(tree: c.tree)
            out["commit"] = r.commit.hex
            out["host"] = m["run.host"] ?? NSNull()
            out["user"] = m["run.user"] ?? NSNull()
            out["exit_code"] = m["run.exit_code"].flatMap { Int($0) } ?? NSNull()
            out["stopped_by"] = m["run.stopped_by"] ?? NSNull()
            out["git_commit"] = c.gitCommit
            out["code_dirty"] = m["code.dirty"] == "true"
            out["inputs"] = m.keys.filter { $0.hasPrefix("input.") && $0.split(separator: ".").count == 2 }.sorted().map { k in
                ["name": String(k.dropFirst(6)), "source": m[k] ?? "", "commit": m[k + ".commit"] ?? "", "id": m[k + ".id"] ?? ""]
            }
            out["env"] = m.filter { $0.key.hasPrefix("env.") }
            out["tags"] = Dictionary(m.filter { $0.key.hasPrefix("tag.") }.map { (String($0.key.dropFirst(4)), $0.value) }, uniquingKeysWith: { a, _ in a })
            out["metric_names"] = files.keys.filter { $0.hasPrefix("metrics/") }.map { String($0.dropFirst(8)).removingPercentEncoding ?? "" }.sorted()
            out["outputs"] = files.filter { $0.key.hasPrefix("outputs/") }.sorted { $0.key < $1.key }.map { ["path": $0.key, "size": $0.value.size] }
        } else if let l = p.live.get(id) {
            out["commit"] = NSNull()
            out["host"] = l.state.host ?? NSNull()
            out["user"] = l.state.user ?? NSNull()
            out["exit_code"] = NSNull()
            out["stopped_by"] = NSNull()
            out["git_commit"] = ""
            out["code_dirty"] = false
            out["inputs"] = [] as [Any]
            out["env"] = [:] as [String: Any]
            out["tags"] = l.state.tags ?? [:]
            out["metric_names"] = l.metrics.keys.sorted()
            out["outputs"] = [] as [Any]
        }
        return json(out)
    }

    func metric(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let id = try runID(ctx)
        let raw = ctx.parameters.get("metric") ?? ""
        let name = raw.removingPercentEncoding ?? raw
        let points = min(max(Int(req.uri.queryParameters["points"].map(String.init) ?? "") ?? 1000, 2), 100_000)
        func render(_ series: MetricSeries) -> String {
            let d = downsample(series, to: points)
            // Written by hand: JSONSerialization is slow for thousands of numbers.
            var text = "{\"metric\":" + jsonString(name) + ",\"count\":\(series.steps.count),\"steps\":["
            text.reserveCapacity(d.steps.count * 24 + 64)
            text += d.steps.map(String.init).joined(separator: ",")
            text += "],\"values\":["
            text += d.values.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ",")
            text += "]}"
            return text
        }
        let text: String
        if let r = try p.catalog.run(id) {
            // A recorded series never changes: its answer for a number of points is kept.
            text = try p.history(r, metric: name, points: points, render)
        } else if let s = p.live.series(id, metric: name) {
            text = render(s)
        } else {
            throw ProtocolError(.notFound, "no run \(id) in project \(p.name)")
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func logs(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let id = try runID(ctx)
        let q = req.uri.queryParameters
        let stream = q["stream"].map(String.init) ?? "stdout"
        guard stream == "stdout" || stream == "stderr" else { throw ProtocolError(.invalidInput, "stream must be stdout or stderr") }
        var bytes: [UInt8]
        if let r = try p.catalog.run(id) {
            let files = try p.store.flatten(tree: try p.store.commit(r.commit).tree)
            bytes = try files["logs/" + stream].map { try Materializer.readBlob(store: p.store, blob: $0.id) } ?? []
        } else if let live = p.live.log(id, stream: stream) {
            bytes = live
        } else {
            throw ProtocolError(.notFound, "no run \(id) in project \(p.name)")
        }
        let size = bytes.count
        var from: Int
        if let o = q["offset"].flatMap({ Int($0) }) { from = min(max(o, 0), size) } else {
            let tail = min(max(Int(q["tail"].map(String.init) ?? "") ?? 65536, 0), 16 << 20)
            from = max(0, size - tail)
        }
        bytes = Array(bytes[from...])
        return json(["stream": stream, "size": size, "offset": from, "text": String(decoding: bytes, as: UTF8.self)])
    }

    func cancel(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) async throws -> Response {
        let id = try runID(ctx)
        let body = (try? await jsonBody(req, limit: 16 << 10)) ?? [:]
        let reason = (body["reason"] as? String).map { String($0.prefix(500)) } ?? "cancelled through the API"
        // Replicas: a database that cannot be read is a 503, not "no such run".
        _ = try p.live.find(id)
        guard let row = try p.row(id) else { throw ProtocolError(.notFound, "no run \(id) in project \(p.name)") }
        guard row.live, row.status == "running" else {
            throw ProtocolError(.conflict, "run \(id) is not running (\(row.status))")
        }
        guard row.source != "mlflow" else {
            throw ProtocolError(.conflict, "run \(id) is an MLflow run: the daemon cannot stop the process that logs it", hint: "stop the script; it ends the run with end_run()")
        }
        guard try p.live.requestCancel(id, reason: reason) else { throw ProtocolError(.conflict, "run \(id) is not running") }
        return json(["id": id, "status": "cancelling"], status: .accepted)
    }

    /// The live-run channel of a `trove run` (Docs/api.md §Live runs).
    func liveUpdate(_ req: Request, _ ctx: BasicRequestContext, _ p: ProjectView) async throws -> Response {
        let id = try runID(ctx)
        let body = try await jsonBody(req, limit: 8 << 20)
        let from = (body["from"] as? NSNumber)?.intValue ?? 0
        let lines = body["metrics"] as? [String] ?? []
        var state: LiveState?
        if let s = body["state"] as? [String: Any] {
            let data = try JSONSerialization.data(withJSONObject: s)
            state = try? JSONDecoder().decode(LiveState.self, from: data)
            guard state != nil else { throw ProtocolError(.invalidInput, "state is not a live run state (id and start are required)") }
        }
        var logs: [(String, UInt64, [UInt8])] = []
        for stream in ["stdout", "stderr"] {
            if let l = body[stream] as? [String: Any], let off = (l["offset"] as? NSNumber)?.uint64Value, let text = l["text"] as? String {
                logs.append((stream, off, Array(text.utf8)))
            }
        }
        let ended = body["ended"] as? String
        let (liveState, liveLogs) = (state, logs)
        if let ended, !["succeeded", "failed", "killed", "timeout", "cancelled"].contains(ended) {
            throw ProtocolError(.invalidInput, "ended must be a run status")
        }
        // A run whose commit has arrived: nothing more to hold.
        if try p.catalog.run(id) != nil { return json(["received": from + lines.count, "cancel": NSNull()]) }
        let r = try await blocking { try p.live.ingest(id, from: from, lines: lines, state: liveState, logs: liveLogs, ended: ended) }
        return json(["received": r.received, "cancel": r.cancel as Any? ?? NSNull()])
    }

    // MARK: sweeps

    func sweeps(_ p: ProjectView, limit: Int?) throws -> [[String: Any]] {
        var refs = try p.store.refs.list(prefix: "sweeps/")
        let counts = refs.isEmpty ? [:] : try p.sweepCounts()
        var out: [(Int64, [String: Any])] = []
        refs.sort { $0.name > $1.name }
        for ref in refs.prefix(limit ?? Int.max) {
            guard let s = try? p.sweep(ref), let c = try? p.store.commit(ref.id) else { continue }
            out.append((c.time, sweepJSON(s, time: c.time, counts: counts[s.id] ?? [:])))
        }
        return out.sorted { $0.0 > $1.0 }.map(\.1)
    }

    func sweepJSON(_ s: SweepRecord, time: Int64, counts: [String: Int]) -> [String: Any] {
        ["id": s.id, "size": s.variants.count, "launcher": s.launcher, "time": time, "command": s.command.joined(separator: " "),
         "early_stop": s.earlyStop.map { "median:\($0.metric),min-step=\($0.minStep),min-runs=\($0.minRuns),mode=\($0.lowerIsBetter ? "min" : "max")" } as Any? ?? NSNull(),
         "counts": counts]
    }

    func sweep(_ ctx: BasicRequestContext, _ p: ProjectView) throws -> Response {
        let id = ctx.parameters.get("sweep") ?? ""
        guard (try? Refs.validate("sweeps/" + id)) != nil, !id.contains("/"), let commit = try p.store.refs.read("sweeps/" + id) else {
            throw ProtocolError(.notFound, "no sweep \(id) in project \(p.name)")
        }
        let s = try p.sweep((name: "sweeps/" + id, id: commit))
        let rows = try p.rows().rows.filter { $0.sweep == id }
        var byIndex: [Int: RunRow] = [:]
        for r in rows {
            if let dash = r.id.lastIndex(of: "-"), r.id.hasPrefix(id + "-"), let n = Int(r.id[r.id.index(after: dash)...]) { byIndex[n] = r }
        }
        var counts: [String: Int] = [:]
        for r in rows { counts[r.status, default: 0] += 1 }
        var out = sweepJSON(s, time: try p.store.commit(commit).time, counts: counts)
        var members: [[String: Any]] = []
        for (i, v) in s.variants.enumerated() {
            let r = byIndex[i]
            var stopped: Any = NSNull()
            if let r, let run = try p.catalog.run(r.id) { stopped = run.metadata.first { $0.key == "run.stopped_by" }?.value ?? NSNull() }
            members.append(["index": i, "params": Dictionary(v.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a }),
                            "run": r?.json() ?? NSNull(), "stopped_by": stopped])
        }
        out["members"] = members
        return json(out)
    }

    // MARK: events

    func events(_ p: ProjectView) -> Response {
        let hub = p.events
        let body = ResponseBody { writer in
            let (id, stream) = hub.subscribe()
            defer { hub.unsubscribe(id) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Pings keep proxies from closing an idle stream, and notice a gone client.
                group.addTask {
                    while true {
                        try await Task.sleep(nanoseconds: 15_000_000_000)
                        hub.publishPing(id)
                    }
                }
                // Replicas: what reaches another replica is found by looking at PostgreSQL.
                if p.live.shared != nil {
                    group.addTask {
                        while true {
                            try await Task.sleep(nanoseconds: 1_000_000_000)
                            try await blocking { p.live.refresh() }
                        }
                    }
                }
                try await writer.write(ByteBuffer(string: "retry: 3000\n\n"))
                // A stopping daemon ends its streams at once (browsers reconnect elsewhere after
                // `retry`) instead of holding its shutdown until the next event or ping.
                try await withGracefulShutdownHandler {
                    for await text in stream { try await writer.write(ByteBuffer(string: text)) }
                } onGracefulShutdown: {
                    hub.unsubscribe(id)
                }
                group.cancelAll()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}

extension EventHub {
    func publishPing(_ id: Int) { publish("ping", [:]) }
}

func json(_ obj: Any, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: obj, options: [])) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func jsonString(_ s: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [s], options: [])) ?? Data("[\"\"]".utf8)
    return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
}

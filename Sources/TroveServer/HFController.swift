import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import TroveCore
import TroveProtocol
import TroveRuns
import TroveStore

/// The read side of the Hugging Face Hub API that `huggingface_hub`'s `hf_hub_download` and
/// `snapshot_download` use (Docs/registry.md §Hugging Face clients), for models and datasets
/// published in a project: `HF_ENDPOINT=http://HOST:PORT/hf`, repo id `PROJECT/NAME`, revision
/// `main` (the latest version), `vN`, an alias or a commit id; the token as `HF_TOKEN`.
struct HFController: Sendable {
    let state: DaemonState

    func addRoutes(to router: Router<BasicRequestContext>) {
        for kind in ["models", "datasets"] {
            let api = router.group(RouterPath("hf/api/\(kind)/{project}/{name}"))
            api.get { req, ctx in await answer("hf-info", req, ctx, kind) { try info($0, revision: "main") } }
            api.get("revision/{revision}") { req, ctx in await answer("hf-info", req, ctx, kind) { try info($0, revision: try param(ctx, "revision")) } }
            api.get("tree/{revision}") { req, ctx in await answer("hf-tree", req, ctx, kind) { try tree($0, revision: try param(ctx, "revision"), under: "") } }
            api.get("tree/{revision}/**") { req, ctx in
                await answer("hf-tree", req, ctx, kind) { try tree($0, revision: try param(ctx, "revision"), under: try catchAll(ctx)) }
            }
            let resolve = router.group(RouterPath((kind == "models" ? "hf" : "hf/datasets") + "/{project}/{name}/resolve/{revision}"))
            resolve.head("**") { req, ctx in await answer("hf-head", req, ctx, kind) { try file($0, req, ctx, head: true) } }
            resolve.get("**") { req, ctx in await answer("hf-get", req, ctx, kind) { try file($0, req, ctx, head: false) } }
        }
    }

    /// A repository: the project's view and the model (or dataset) name.
    struct Repo {
        let view: ProjectView
        let name: String
        let kind: String
        var id: String { "\(view.name)/\(name)" }
        var registryKind: String { kind == "models" ? "model" : "dataset" }
    }

    struct HFError: Error {
        var status: HTTPResponse.Status
        var code: String
        var message: String
    }

    func param(_ ctx: BasicRequestContext, _ name: String) throws -> String {
        let raw = ctx.parameters.get(name) ?? ""
        return raw.removingPercentEncoding ?? raw
    }

    func catchAll(_ ctx: BasicRequestContext) throws -> String {
        let text = ctx.parameters.getCatchAll().map { String($0).removingPercentEncoding ?? String($0) }.joined(separator: "/")
        do { return try APIController.cleanPath(text) } catch {
            throw HFError(status: .badRequest, code: "EntryNotFound", message: "\(text.debugDescription) is not a clean relative path")
        }
    }

    /// Checks the token (the same tokens and roles as everywhere; another project's token gets
    /// the answer a missing repository gets) and answers errors with the headers the client reads.
    func answer(_ route: String, _ req: Request, _ ctx: BasicRequestContext, _ kind: String, _ body: (Repo) throws -> Response) async -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let response = await respond(req, ctx, kind, body)
        state.metrics.request(route: route, status: Int(response.status.code), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }

    func respond(_ req: Request, _ ctx: BasicRequestContext, _ kind: String, _ body: (Repo) throws -> Response) async -> Response {
        let project = ctx.parameters.get("project") ?? ""
        let name = ctx.parameters.get("name") ?? ""
        do {
            let repo: Repo
            do {
                _ = try state.caller(req, project: project, role: .read)
                guard let view = try state.views.view(project) else { throw APIController.noProject(project) }
                repo = Repo(view: view, name: name, kind: kind)
            } catch let e as ProtocolError where e.code == .unauthorized {
                throw HFError(status: .unauthorized, code: "RepoNotFound", message: "a token is required: set HF_TOKEN to a Trove token of the project")
            } catch is ProtocolError {
                throw HFError(status: .notFound, code: "RepoNotFound", message: "Repository \(project)/\(name) not found")
            }
            return try body(repo)
        } catch let e as HFError {
            return HFController.error(e)
        } catch {
            let e = (error as? ProtocolError) ?? ProtocolError.from(error)
            return HFController.error(HFError(status: e.code == .notFound ? .notFound : .internalServerError, code: e.code == .notFound ? "EntryNotFound" : "InternalError", message: e.message))
        }
    }

    static func error(_ e: HFError) -> Response {
        var r = json(["error": e.message], status: e.status)
        r.headers[HTTPField.Name("X-Error-Code")!] = e.code
        r.headers[HTTPField.Name("X-Error-Message")!] = e.message.filter { $0.isASCII && !$0.isNewline }
        return r
    }

    /// `main` → the latest version; `vN`; an alias; a commit id (or a prefix of 7 or more) of one of
    /// NAME's versions. The version's commit.
    func resolve(_ repo: Repo, _ revision: String) throws -> ObjectID {
        let store = repo.view.store
        let notFound = HFError(status: .notFound, code: "RevisionNotFound", message: "Revision \(revision) of \(repo.id) not found")
        if ObjectID.isHexPrefix(revision), revision.count >= 7 {
            guard let id = try? store.resolve(revision), let c = try? store.commit(id),
                  c.metadata.contains(where: { $0.key == "registry.name" && $0.value == repo.name }),
                  c.metadata.contains(where: { $0.key == "registry.kind" && $0.value == repo.registryKind }) else { throw notFound }
            return id
        }
        // The registry's own resolution (latest, vN, an alias); a repository with no version at
        // all is RepoNotFound, not RevisionNotFound.
        let registry = Registry(store: store, kind: repo.kind == "models" ? .model : .dataset)
        guard (try? Registry.validate(name: repo.name)) != nil, try !registry.versions(repo.name).isEmpty else {
            throw HFError(status: .notFound, code: "RepoNotFound", message: "Repository \(repo.id) not found")
        }
        guard let resolved = try? registry.resolve(repo.name + "@" + (revision == "main" ? "latest" : revision)) else { throw notFound }
        return resolved.commit
    }

    /// The commit as the client sees it: 40 hex digits (git's length), a unique prefix of ours.
    func sha(_ id: ObjectID) -> String { String(id.hex.prefix(40)) }

    func info(_ repo: Repo, revision: String) throws -> Response {
        let id = try resolve(repo, revision)
        let c = try repo.view.store.commit(id)
        let files = try repo.view.store.flatten(tree: c.tree).sorted { $0.key < $1.key }
        let time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(c.time)))
        return json(["id": repo.id, "modelId": repo.id, "sha": sha(id), "lastModified": time, "createdAt": time,
                     "private": true, "disabled": false, "gated": false, "downloads": 0, "likes": 0, "tags": [String](),
                     "siblings": files.map { ["rfilename": $0.key, "size": $0.value.size, "blobId": $0.value.id.hex] }])
    }

    func tree(_ repo: Repo, revision: String, under: String) throws -> Response {
        let id = try resolve(repo, revision)
        let c = try repo.view.store.commit(id)
        var out: [[String: Any]] = []
        let prefix = under.isEmpty ? "" : under + "/"
        var dirs = Set<String>()
        for (path, e) in try repo.view.store.flatten(tree: c.tree).sorted(by: { $0.key < $1.key }) where under.isEmpty || path.hasPrefix(prefix) {
            // The folders between `under` and the file, each listed once, before their files.
            var chain: [String] = []
            var parent = FileIO.dirname(path)
            while parent != "." && parent != "/" && !parent.isEmpty && parent != under {
                chain.append(parent)
                parent = FileIO.dirname(parent)
            }
            for d in chain.reversed() where dirs.insert(d).inserted { out.append(["type": "directory", "path": d, "oid": ""]) }
            out.append(["type": "file", "path": path, "size": e.size, "oid": e.id.hex])
        }
        if out.isEmpty && !under.isEmpty {
            throw HFError(status: .notFound, code: "EntryNotFound", message: "\(under) does not exist in \(repo.id) at \(revision)")
        }
        return json(out)
    }

    func file(_ repo: Repo, _ req: Request, _ ctx: BasicRequestContext, head: Bool) throws -> Response {
        let revision = try param(ctx, "revision")
        let path = try catchAll(ctx)
        let id = try resolve(repo, revision)
        guard !path.isEmpty, let e = try? repo.view.store.entry(at: path, inCommit: id), e.kind != .directory else {
            var r = HFController.error(HFError(status: .notFound, code: "EntryNotFound", message: "\(path) does not exist in \(repo.id) at \(revision)"))
            r.headers[HTTPField.Name("X-Repo-Commit")!] = sha(id)
            return r
        }
        let extra: HTTPFields = [HTTPField.Name("X-Repo-Commit")!: sha(id), HTTPField.Name("X-Linked-Etag")!: "\"\(e.id.hex)\"",
                                 HTTPField.Name("X-Linked-Size")!: "\(e.size)"]
        return try BlobResponse.make(repo.view.store, e, range: req.headers[.range], headers: extra, head: head)
    }
}

import Foundation
import Hummingbird
import HTTPTypes
import TroveCore
import TroveProtocol
import TroveStore

/// Who is asking, after the token or session was checked.
struct Caller: Sendable {
    var project: String
    var role: Role
    /// Set when the request came with the session cookie (then CSRF applies).
    var session: WebSession?
}

/// A browser's login: made from a token by `POST /api/v1/session`. It keeps the token's hash,
/// never the token, and the token is checked again on every request, so revoking it ends the
/// session at once. One daemon keeps sessions in memory (a restart logs browsers out); replicas
/// keep them in PostgreSQL, so a browser's next request may go to any replica.
struct WebSession: Codable, Sendable {
    var id: String
    var tokenHash: String
    var csrf: String
    var expires: Date
}

final class SessionStore: @unchecked Sendable {
    static let cookie = "trove_session"
    static let lifetime: TimeInterval = 12 * 3600
    let documents: Documents

    init(_ documents: Documents) { self.documents = documents }

    /// Sessions are stored under the hash of their id: the cookie is the only copy of the id.
    private func key(_ id: String) -> String { "session/" + SHA256.hash(Array(id.utf8)).hex }

    func create(token: String) throws -> WebSession {
        let s = WebSession(id: SessionStore.random(), tokenHash: TokenStore.hash(token), csrf: SessionStore.random(),
                           expires: Date().addingTimeInterval(SessionStore.lifetime))
        var stored = s
        stored.id = ""
        try documents.put("", key(s.id), Array(try JSONEncoder().encode(stored)), ttl: SessionStore.lifetime)
        return s
    }

    func get(_ id: String) throws -> WebSession? {
        guard let bytes = try documents.get("", key(id)), var s = try? JSONDecoder().decode(WebSession.self, from: Data(bytes)), s.expires > Date() else { return nil }
        s.id = id
        return s
    }

    func remove(_ id: String) { try? documents.delete("", key(id)) }

    static func random() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<24).map { _ in String(format2: UInt8.random(in: 0...255, using: &rng)) }.joined()
    }
}

extension DaemonState {
    /// The caller of an API request: a bearer token, else the session cookie. For a project
    /// route, a token of another project gets the same 404 as a missing project.
    func caller(_ request: Request, project: String?, role: Role) throws -> Caller {
        var token: String?
        var session: WebSession?
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        } else if let sid = request.cookies[SessionStore.cookie]?.value, let s = try sessions.get(sid) {
            token = s.tokenHash
            session = s
        }
        guard let token else {
            throw ProtocolError(.unauthorized, "a token or a session is required", hint: "log in at / with a token, or send Authorization: Bearer TOKEN")
        }
        guard let entry = try session == nil ? tokens.verify(token) : tokens.verify(hash: token) else {
            if let session { sessions.remove(session.id) }
            throw ProtocolError(.unauthorized, "the token is unknown, expired or revoked", hint: "ask the daemon's admin for a new one")
        }
        if let project {
            try ProjectRegistry.validate(project)
            guard entry.project == project else { throw APIController.noProject(project) }
        }
        guard entry.role >= role else {
            throw ProtocolError(.forbidden, "the token's role \(entry.role) may not do this (needs \(role))")
        }
        // A browser sends cookies by itself: a change made with one must prove it comes from our page.
        if let session, request.method != .get, request.method != .head {
            guard request.headers[HTTPField.Name("X-CSRF-Token")!] == session.csrf else {
                throw APIError.csrf
            }
        }
        return Caller(project: entry.project, role: entry.role, session: session)
    }
}

/// The CSRF refusal: its own code, so that a page can tell it from a role refusal.
enum APIError: Error {
    case csrf
    case range(size: UInt64)
}

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

/// A browser's login: made from a token by `POST /api/v1/session`, kept in memory only (a
/// daemon restart logs browsers out). The token itself stays on the server and is checked
/// again on every request, so revoking it ends the session at once.
struct WebSession: Sendable {
    var id: String
    var token: String
    var csrf: String
    var expires: Date
}

final class SessionStore: @unchecked Sendable {
    static let cookie = "trove_session"
    static let lifetime: TimeInterval = 12 * 3600
    private var sessions: [String: WebSession] = [:]
    private let lock = Mutex()

    func create(token: String) -> WebSession {
        let s = WebSession(id: SessionStore.random(), token: token, csrf: SessionStore.random(), expires: Date().addingTimeInterval(SessionStore.lifetime))
        lock.withLock {
            // Expired ones go when new ones come.
            let now = Date()
            sessions = sessions.filter { $0.value.expires > now }
            sessions[s.id] = s
        }
        return s
    }

    func get(_ id: String) -> WebSession? {
        lock.withLock { sessions[id].flatMap { $0.expires > Date() ? $0 : nil } }
    }

    func remove(_ id: String) { _ = lock.withLock { sessions.removeValue(forKey: id) } }

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
        } else if let sid = request.cookies[SessionStore.cookie]?.value, let s = sessions.get(sid) {
            token = s.token
            session = s
        }
        guard let token else {
            throw ProtocolError(.unauthorized, "a token or a session is required", hint: "log in at / with a token, or send Authorization: Bearer TOKEN")
        }
        guard let entry = try tokens.verify(token) else {
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

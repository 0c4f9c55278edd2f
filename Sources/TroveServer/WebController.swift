import Hummingbird
import HTTPTypes
import NIOCore

/// The web UI: one page, its stylesheet and script, embedded in the binary (no CDN, works
/// offline). The page itself holds no data; everything comes from `/api/v1`.
struct WebController: Sendable {
    let state: DaemonState

    /// Scripts and styles only from this daemon; no inline script, no framing by other sites.
    static let securityHeaders: HTTPFields = [
        HTTPField.Name("Content-Security-Policy")!: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .cacheControl: "no-cache",
    ]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in WebController.asset(PackageResources.index_html, "text/html; charset=utf-8") }
        router.get("ui/app.js") { _, _ in WebController.asset(PackageResources.app_js, "text/javascript; charset=utf-8") }
        router.get("ui/app.css") { _, _ in WebController.asset(PackageResources.app_css, "text/css; charset=utf-8") }
    }

    static func asset(_ bytes: [UInt8], _ type: String) -> Response {
        var headers = securityHeaders
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

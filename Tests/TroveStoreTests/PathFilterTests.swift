import TroveStore
import XCTest

final class PathFilterTests: XCTestCase {
    func testPatternsNamePathsFoldersAndGlobs() {
        let f = PathFilter(["/data/x.txt", "models/", "raw", "logs/*", "**/*.bin", "*.md", "a?c"])
        for yes in ["data/x.txt", "models/m/w.pt", "raw/1", "raw", "logs/a", "logs/a/b", "q/r/s.bin", "top.bin", "README.md", "abc", "abc/d"] {
            XCTAssertTrue(f.includes(yes), yes)
        }
        for no in ["data/x.txt2", "data/y.txt", "modelsx/a", "rawx", "log/a", "docs/README.md", "abbc", "data"] {
            XCTAssertFalse(f.includes(no), no)
        }
        XCTAssertTrue(PathFilter.all.includes("anything/at/all"))
    }
}

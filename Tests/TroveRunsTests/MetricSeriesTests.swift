import Foundation
import TroveCore
import TroveRuns
import TroveStore
import TroveTestSupport
import XCTest

final class MetricSeriesTests: XCTestCase {
    func testSeriesRoundTripExactlyWithGapsNegativeStepsAndSpecialValues() throws {
        let s = MetricSeries(steps: [0, 1, 2, 10, 9, -5, 1 << 40], values: [0.31, 0.1, -2, .infinity, .nan, 1e-300, 7])
        let back = try MetricSeries.decode(s.encode())
        XCTAssertEqual(back.steps, s.steps)
        XCTAssertEqual(back.values.map(\.bitPattern), s.values.map(\.bitPattern), "bit for bit")
        let f = MetricSeries(steps: [1, 2, 3], values: [Double(Float(0.1)), Double(Float(0.2)), 3])
        XCTAssertEqual(f.encode().count, 6 + 1 + 3 + 3 * 4, "float32-exact values keep 4 bytes")
        XCTAssertEqual(try MetricSeries.decode(f.encode()), f)
    }

    func testDamagedSeriesAreRefused() {
        var bytes = MetricSeries(steps: [1, 2], values: [1, 2]).encode()
        bytes.removeLast()
        XCTAssertThrowsError(try MetricSeries.decode(bytes))
        XCTAssertThrowsError(try MetricSeries.decode(Array("TRMS".utf8) + [9, 8, 0]))
        XCTAssertThrowsError(try MetricSeries.decode([]))
    }

    func testMetricNamesBecomeSafeFileNames() {
        XCTAssertEqual(MetricSeries.fileName("val_acc"), "val_acc")
        XCTAssertEqual(MetricSeries.fileName("val/acc"), "val%2Facc")
        XCTAssertEqual(MetricSeries.fileName(".."), "%2E.")
        XCTAssertEqual(MetricSeries.fileName("λ"), "%CE%BB")
    }

    /// The bar: a run's history of 1,000,000 points stores in at most 8 MB.
    func testAMillionPointLossCurveStoresInUnderEightMegabytes() throws {
        let temp = TempDir("trove-series")
        let store = try Store.initialize(root: temp.path + "/.trove", workTree: temp.path)
        var g = SeededBytes(seed: 5)
        let n = 1_000_000
        let steps = (0..<Int64(n)).map { $0 }
        // A float32 loss (what `.item()` of a float32 tensor gives): a decaying curve with noise.
        let values = (0..<n).map { i -> Double in
            let noise = Double(g.next() % 1000) / 1e5
            return Double(Float(2.0 / (1.0 + Double(i) / 5000) + noise))
        }
        let bytes = MetricSeries(steps: steps, values: values).encode()
        let writer = ObjectWriter(store: store)
        _ = try writer.put(.chunk, bytes)
        try writer.finish()
        XCTAssertLessThanOrEqual(writer.storedBytes, 8_000_000, "stored \(writer.storedBytes) bytes")
        XCTAssertEqual(try MetricSeries.decode(bytes).values, values)
    }
}

final class SweepSpecTests: XCTestCase {
    func testTheGridExpandsInOrderAndRandomSamplesAreSeeded() throws {
        let run = RunSpec(command: ["true"], directory: "/")
        var spec = SweepSpec(grid: [("lr", ["0.1", "0.01"]), ("bs", ["32", "64", "128"])], run: run)
        let all = spec.variants().map { $0.map { "\($0.name)=\($0.value)" }.joined(separator: " ") }
        XCTAssertEqual(all, ["lr=0.1 bs=32", "lr=0.1 bs=64", "lr=0.1 bs=128", "lr=0.01 bs=32", "lr=0.01 bs=64", "lr=0.01 bs=128"])
        spec.random = 3
        spec.seed = 7
        let a = spec.variants().map { $0.map(\.value) }
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(Set(a.map { $0.joined(separator: ",") }).count, 3, "distinct")
        XCTAssertEqual(spec.variants().map { $0.map(\.value) }, a, "the same seed draws the same runs")
        spec.random = 100
        XCTAssertEqual(spec.variants().count, 6, "never more than the grid")
    }

    func testEarlyStopRulesParseAndCompareToTheMedian() throws {
        let e = try EarlyStop.parse("median:val_acc,min-step=5,mode=max")
        XCTAssertEqual(e, EarlyStop(metric: "val_acc", minStep: 5, lowerIsBetter: false))
        XCTAssertThrowsError(try EarlyStop.parse("mean:loss"))
        XCTAssertThrowsError(try EarlyStop.parse("median:loss,mode=up"))
        let loss = try EarlyStop.parse("median:loss")
        XCTAssertTrue(loss.worse(0.9, than: [0.1, 0.2, 0.95]))
        XCTAssertFalse(loss.worse(0.2, than: [0.1, 0.2, 0.95]), "equal to the median is not worse")
        XCTAssertFalse(loss.worse(5, than: []), "nothing to compare with")
    }
}

final class RunFilterTests: XCTestCase {
    struct Row: RunFields {
        var values: [String: String]
        func field(_ name: String) -> String? { values[name] }
    }

    func testWhereComparesNumbersAsNumbersAndTextAsText() throws {
        let a = Row(values: ["params.lr": "0.1", "status": "succeeded", "metrics.acc": "0.9"])
        let b = Row(values: ["params.lr": "0.01", "status": "failed"])
        XCTAssertTrue(try RunFilter.parse("params.lr<0.05").matches(b))
        XCTAssertFalse(try RunFilter.parse("params.lr<0.05").matches(a))
        XCTAssertTrue(try RunFilter.parse("params.lr >= 0.1").matches(a), "spaces allowed, 0.1 = 0.10")
        XCTAssertTrue(try RunFilter.parse("status=succeeded").matches(a))
        XCTAssertTrue(try RunFilter.parse("status!=succeeded").matches(b))
        XCTAssertFalse(try RunFilter.parse("metrics.acc>0").matches(b), "no such field: no match")
        XCTAssertTrue(try RunFilter.parse("params.lr==0.100").matches(a))
        XCTAssertThrowsError(try RunFilter.parse("params.lr"))
        XCTAssertThrowsError(try RunFilter.parse("<3"))
    }

    func testSortIsNumericDescendingWithMissingValuesLast() {
        let rows = [Row(values: ["id": "a", "metrics.acc": "0.5"]), Row(values: ["id": "b"]),
                    Row(values: ["id": "c", "metrics.acc": "0.95"]), Row(values: ["id": "d", "metrics.acc": "0.10"])]
        XCTAssertEqual(RunFilter.sort(rows, by: "-metrics.acc").map { $0.values["id"]! }, ["c", "a", "d", "b"])
        XCTAssertEqual(RunFilter.sort(rows, by: "metrics.acc").map { $0.values["id"]! }, ["d", "a", "c", "b"])
    }
}

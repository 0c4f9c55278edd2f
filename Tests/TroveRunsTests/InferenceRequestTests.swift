import Foundation
import TroveRuns
import TroveStore
import XCTest

/// `trove serve` passes request and answer JSON through as bytes; these check that what it lets
/// through is valid JSON and what it refuses is named.
final class InferenceRequestTests: XCTestCase {
    let spec = try! ServingSpec.parse(Array(#"{"command": ["w"], "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}"#.utf8))

    func request(_ text: String) throws -> InferenceRequest { try InferenceRequest(body: Array(text.utf8)) }

    func testScannerSplitsAnObjectAndUnescapesStrings() throws {
        let text = Array(#" {"a": [1, -2.5e3, {"b": null}], "s": "q\"\\\u00e9\ud83d\ude00\n", "a": true, "e": {}} "#.utf8)
        let m = try JSONScanner.topObject(text)
        XCTAssertEqual(Set(m.keys), ["a", "s", "e"])
        XCTAssertEqual(String(decoding: text[m["a"]!], as: UTF8.self), "true", "a repeated key keeps its last value")
        XCTAssertEqual(JSONScanner(text).string(in: m["s"]), "q\"\\é😀\n")
        // Everything the scanner accepts, Foundation parses too.
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(text)))
    }

    func testScannerRefusesWhatIsNotJSON() {
        let bad = [
            "", "[1]", "{", #"{"a"}"#, #"{"a":}"#, #"{"a":1,}"#, #"{"a":[1,]}"#, #"{"a":01}"#, #"{"a":1.}"#, #"{"a":-}"#,
            #"{"a":tru}"#, #"{"a":"x}"#, "{\"a\":\"\u{1}\"}", #"{"a":"\x"}"#, #"{"a":"\u12"}"#, #"{"a":1} x"#, #"{a:1}"#,
            "{\"a\":" + String(repeating: "[", count: 300) + String(repeating: "]", count: 300) + "}",
        ]
        for text in bad {
            XCTAssertThrowsError(try JSONScanner.topObject(Array(text.utf8)), text) { e in
                XCTAssertTrue((e as? StoreError)?.message.hasPrefix("invalid JSON at byte") ?? false, "\(e)")
            }
        }
    }

    func testRequestsThatFitTheSpecPassAndOthersAreNamed() throws {
        XCTAssertNil(spec.mismatch(try request(#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}"#)))
        XCTAssertNil(spec.mismatch(try request(#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [[1, 2, 3, 4], [5, 6, 7, 8]]}]}"#)),
                     "row-major nested data counts its values")
        let cases: [(String, String)] = [
            (#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}"#, "has shape [1, 3], expected [-1, 4]"),
            (#"{"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}]}"#, "has datatype INT64"),
            (#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]}]}"#, "data holds 3 values"),
            (#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, "4"]}]}"#, "needs numbers"),
            (#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4.5], "data": [1, 2, 3, 4]}]}"#, "has shape none"),
            (#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4]}]}"#, "has no \"data\" list"),
            (#"{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}"#, "input x is missing"),
            (#"{"inputs": [{"datatype": "FP32"}]}"#, "needs to be an object with a \"name\""),
        ]
        for (text, why) in cases {
            let got = spec.mismatch(try request(text))
            XCTAssertTrue(got?.contains(why) ?? false, "\(text): \(got ?? "accepted")")
        }
        XCTAssertThrowsError(try request(#"{"inputs": []}"#))
        XCTAssertThrowsError(try request(#"{"outputs": []}"#))
        XCTAssertThrowsError(try request(#"{"inputs": [{"name": "x"}]"#)) { e in
            XCTAssertTrue((e as? StoreError)?.message.contains("not a JSON object") ?? false, "\(e)")
        }
    }
}

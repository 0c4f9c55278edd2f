import Foundation
import TroveSync
import XCTest

final class SigV4Tests: XCTestCase {
    /// The worked example of the S3 documentation ("GET Object" with a Range header).
    func testTheDocumentedGetObjectExampleSignsToItsPublishedSignature() {
        let signer = SigV4(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1")
        let headers = signer.sign(method: "GET", path: "/test.txt", query: [],
                                  headers: [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9")],
                                  payloadHash: SigV4.emptyPayload, date: Date(timeIntervalSince1970: 1_369_353_600))
        let auth = headers.first { $0.0 == "Authorization" }?.1
        XCTAssertEqual(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                       + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        XCTAssertEqual(headers.first { $0.0 == "x-amz-date" }?.1, "20130524T000000Z")
    }

    func testQueryAndPathAreEncodedTheSigV4Way() {
        XCTAssertEqual(SigV4.encode("a b/c~d*"), "a%20b%2Fc~d%2A")
        XCTAssertEqual(SigV4.encode("x/y z", keepSlash: true), "x/y%20z")
    }
}

final class S3LocationTests: XCTestCase {
    func testURLsAndEndpointsAreCheckedBeforeAnyRequest() throws {
        let l = try S3Location.parse("s3://my-bucket/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A7480&region=eu-west-1")
        XCTAssertEqual(l.bucket, "my-bucket")
        XCTAssertEqual(l.prefix, "a/b")
        XCTAssertEqual(l.endpoint, "http://127.0.0.1:7480")
        XCTAssertEqual(l.region, "eu-west-1")
        XCTAssertEqual(try S3Location.parse(l.text), l)
        for bad in ["s3://ab/x", "s3://Upper/x", "s3://bucket/../x", "s3://bucket/x?endpoint=ftp://h"] {
            XCTAssertThrowsError(try S3Location.parse(bad), bad)
        }
        let env = ["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"]
        XCTAssertThrowsError(try S3Client(location: try S3Location.parse("s3://bucket/x?endpoint=http%3A%2F%2Fgw%2Fs3"), environment: env)) { e in
            XCTAssertTrue("\(e)".contains("no path"), "\(e)")
        }
        XCTAssertThrowsError(try S3Client(location: l, environment: ["HOME": "/nonexistent"])) { XCTAssertEqual(($0 as? SyncError)?.code, .unauthorized) }
    }
}

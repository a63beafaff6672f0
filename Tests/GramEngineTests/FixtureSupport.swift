import Foundation
import GramEngine
import Network
import NumPyIO

/// The committed reference fixtures (made by scripts/reference/make_fixtures.py with
/// neural-tangents 0.6.5 in float64), found relative to this source file.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    struct Case: Decodable, Sendable, CustomStringConvertible {
        let name: String
        let k: Int?
        var description: String { name }
    }

    static func cases(_ kind: String) -> [Case] {
        let url = root.appendingPathComponent(kind).appendingPathComponent("cases.json")
        guard let data = try? Data(contentsOf: url), let list = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return list
    }

    static func directory(_ kind: String, _ name: String) -> String {
        root.appendingPathComponent(kind).appendingPathComponent(name).path
    }

    static func array(_ kind: String, _ name: String, _ file: String) throws -> NPYArray? {
        let path = directory(kind, name) + "/" + file
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try NPYFormat.decode(Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

/// max |a - b| / max |b|: the relative error measure of the fixtures' tolerances.
func relativeError(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var diff = 0.0, scale = 0.0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(x - y))
        scale = max(scale, abs(y))
    }
    return scale == 0 ? diff : diff / scale
}

/// (N·k, M·k) with row i·k + a → (N, M, k, k), neural-tangents' layout of the full kernel.
func fourAxes(_ matrix: [Double], n: Int, m: Int, k: Int) -> [Double] {
    var result = [Double](repeating: 0, count: matrix.count)
    for i in 0..<n { for j in 0..<m { for a in 0..<k { for b in 0..<k {
        result[((i * m + j) * k + a) * k + b] = matrix[(i * k + a) * (m * k) + j * k + b]
    } } } }
    return result
}

import Foundation
import NumPyIO
import Testing

/// Throughput of the bulk paths on a 4000×4000 float64 array (128 MB). Off by default;
/// run with `NUMPYIO_BENCHMARK=1 swift test -c release --filter ThroughputTests`.
@Suite("Throughput")
struct ThroughputTests {
    static func best(of runs: Int, _ body: () throws -> Void) rethrows -> Duration {
        let clock = ContinuousClock()
        var best = Duration.seconds(1_000_000)
        for _ in 0..<runs {
            best = min(best, try clock.measure(body))
        }
        return best
    }

    static func report(_ label: String, bytes: Int, _ duration: Duration) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
        let rate = Double(bytes) / seconds / 1e9
        print("\(label): \(String(format: "%.1f", seconds * 1000)) ms, \(String(format: "%.2f", rate)) GB/s")
    }

    @Test("4000×4000 float64 .npy and .npz throughput",
          .enabled(if: ProcessInfo.processInfo.environment["NUMPYIO_BENCHMARK"] != nil))
    func throughput() throws {
        let side = 4000
        let values = [Double](unsafeUninitializedCapacity: side * side) { buffer, count in
            for index in 0..<(side * side) { buffer[index] = Double(index % 9973) * 0.125 }
            count = side * side
        }
        let bytes = side * side * 8
        var array = NPYArray(shape: [side, side], doubles: values)
        Self.report("NPYArray(shape:doubles:)", bytes: bytes, Self.best(of: 5) {
            array = NPYArray(shape: [side, side], doubles: values)
        })
        var encoded = Data()
        Self.report("NPYFormat.encode", bytes: bytes, Self.best(of: 5) { encoded = NPYFormat.encode(array) })
        var decoded = array
        Self.report("NPYFormat.decode", bytes: bytes, try Self.best(of: 5) { decoded = try NPYFormat.decode(encoded) })
        #expect(decoded == array)
        var doubles: [Double] = []
        Self.report("NPYArray.doubles()", bytes: bytes, Self.best(of: 5) { doubles = decoded.doubles() })
        #expect(doubles == values)

        // The same bytes declared Fortran-order: decoding transposes.
        var fortran = encoded
        let header = "'fortran_order': False"
        let range = try #require(fortran.range(of: Data(header.utf8)))
        fortran.replaceSubrange(range, with: Data("'fortran_order': True ".utf8))
        var transposed = array
        Self.report("NPYFormat.decode (Fortran order)", bytes: bytes, try Self.best(of: 3) {
            transposed = try NPYFormat.decode(fortran)
        })
        let transposedValues = transposed.doubles()
        #expect(transposedValues[1] == values[side] && transposedValues[side] == values[1])

        var archive = Data()
        Self.report("NPZFormat.encode (stored)", bytes: bytes, try Self.best(of: 3) { archive = try NPZFormat.encode([("x", array)]) })
        Self.report("NPZFormat.decode (stored)", bytes: bytes, try Self.best(of: 3) { decoded = try NPZFormat.decode(archive)["x"]! })
        #expect(decoded == array)
        Self.report("NPZFormat.encode (deflated)", bytes: bytes, try Self.best(of: 1) {
            archive = try NPZFormat.encode([("x", array)], compressed: true)
        })
        print("deflated archive: \(archive.count) bytes")
        Self.report("NPZFormat.decode (deflated)", bytes: bytes, try Self.best(of: 1) { decoded = try NPZFormat.decode(archive)["x"]! })
        #expect(decoded == array)
    }
}

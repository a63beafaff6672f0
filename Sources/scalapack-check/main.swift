// Checks DistributedEigen against LAPACK, under mpirun on any number of ranks.
//
//   scalapack-check                       the suite: several (n, nb), values, vectors,
//                                         the top K, a NaN; exits 1 on any failure
//   scalapack-check --bench N [--nb B]    times ScaLAPACKEigen.solve (all pairs) on N x N
//   scalapack-check --bench N --lapack    times LAPACK dsyevd (SymmetricEigen) on one rank
//
// Each rank holds the upper tiles of a contiguous run, as the engine deals them; rank 0
// also builds the whole matrix for LAPACK and does the comparisons. Prints one line.
import DistributedEigen
import Foundation
import LinearAlgebra
import MPI
import NumPyIO

/// Entry (i, j) of the deterministic symmetric test matrix: uniform in [-1, 1].
func entry(_ i: Int, _ j: Int, seed: UInt64) -> Double {
    var x = UInt64(min(i, j)) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(max(i, j)) &* 0xC2B2_AE3D_27D4_EB4F ^ seed
    x ^= x >> 31; x = x &* 0xBF58_476D_1CE4_E5B9
    x ^= x >> 27; x = x &* 0x94D0_49BB_1331_11EB
    x ^= x >> 31
    return Double(x >> 11) * 0x1.0p-53 * 2 - 1
}

/// This rank's upper tiles: tiles (I, J), I <= J, listed row-major and dealt in contiguous
/// runs of about equal area (as TilePlan deals them).
func myBlocks(n: Int, nb: Int, seed: UInt64, world: Communicator) -> [(row: Int, column: Int, values: [Double])] {
    let count = (n + nb - 1) / nb
    func length(_ b: Int) -> Int { min(n, (b + 1) * nb) - b * nb }
    var tiles: [(Int, Int)] = []
    for i in 0..<count { for j in i..<count { tiles.append((i, j)) } }
    var prefix = [0]
    for (i, j) in tiles { prefix.append(prefix.last! + length(i) * length(j)) }
    func boundary(_ r: Int) -> Int {
        if r == 0 { return 0 }
        if r == world.size { return tiles.count }
        let target = (prefix.last! * r + world.size - 1) / world.size
        return prefix.firstIndex { $0 >= target } ?? tiles.count
    }
    return tiles[boundary(world.rank)..<boundary(world.rank + 1)].map { (i, j) in
        var values: [Double] = []
        for r in (i * nb)..<(i * nb + length(i)) { for c in (j * nb)..<(j * nb + length(j)) { values.append(entry(r, c, seed: seed)) } }
        return (i, j, values)
    }
}

func fullMatrix(n: Int, seed: UInt64) -> [Double] {
    var a = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { a[i * n + j] = entry(i, j, seed: seed) } }
    return a
}

/// LAPACK xSYT21's scaled residuals for the k columns of the row-major n x k `vectors`:
/// max_j ||A v_j - λ_j v_j||_1 / (n ||A||_1 ε) and ||I - VᵀV||_1 / (n ε).
func scaledResiduals(matrix a: [Double], n: Int, values: [Double], vectors v: [Double]) -> (Double, Double) {
    let k = values.count
    let eps = Double.ulpOfOne / 2
    var av = [Double](repeating: 0, count: n * k)
    a.withUnsafeBufferPointer { ap in v.withUnsafeBufferPointer { vp in av.withUnsafeMutableBufferPointer { out in
        GEMM.multiply(m: n, n: k, k: n, a: ap.baseAddress!, lda: n, b: vp.baseAddress!, ldb: k, c: out.baseAddress!, ldc: k)
    } } }
    var normA = 0.0
    for j in 0..<n { normA = max(normA, (0..<n).reduce(0) { $0 + abs(a[$1 * n + j]) }) }
    var residual = 0.0, orthogonality = 0.0
    for j in 0..<k {
        residual = max(residual, (0..<n).reduce(0) { $0 + abs(av[$1 * k + j] - values[j] * v[$1 * k + j]) })
        var sum = 0.0
        for l in 0..<k {
            let dot = (0..<n).reduce(0) { $0 + v[$1 * k + j] * v[$1 * k + l] }
            sum += abs((j == l ? 1 : 0) - dot)
        }
        orthogonality = max(orthogonality, sum)
    }
    return (residual / (Double(n) * normA * eps), orthogonality / (Double(n) * eps))
}

/// Writes `vectors` (count columns) to a fresh .npy through writeVectors and returns its
/// contents on rank 0 (nil elsewhere, or when rank 0 cannot read it back: then the
/// reason is in `failures`). Collective.
func roundTrip(_ vectors: BlockCyclicMatrix, count: Int, label: String, world: Communicator,
               failures: inout [String]) throws -> [Double]? {
    var path = ""
    var dataOffset = 0
    if world.isRoot {
        let candidate = NSTemporaryDirectory() + "scalapack-check-\(getpid())-\(label).npy"
        let header = NPYFormat.header(shape: [vectors.n, count], dtype: .float64)
        if FileManager.default.createFile(atPath: candidate, contents: header),
           truncate(candidate, off_t(header.count + 8 * vectors.n * count)) == 0 {
            path = candidate
            dataOffset = header.count
        }
    }
    // An empty path tells every rank that rank 0 could not create the file.
    path = String(decoding: try world.broadcast(bytes: Array(path.utf8)), as: UTF8.self)
    if path.isEmpty { throw CheckFailure("\(label): rank 0 cannot create the eigenvector file") }
    var offset = [Int64(dataOffset)]
    try world.broadcast(&offset)
    try ScaLAPACKEigen.writeVectors(vectors, columns: count, path: path, dataOffset: Int(offset[0]), world: world)
    guard world.isRoot else { return nil }
    defer { unlink(path) }
    do {
        let array = try NPYFormat.read(contentsOf: URL(fileURLWithPath: path))
        guard array.shape == [vectors.n, count] else {
            failures.append("\(label): the file has shape \(array.shape)")
            return nil
        }
        return array.doubles()
    } catch {
        failures.append("\(label): reading the eigenvectors back failed: \(error)")
        return nil
    }
}

struct CheckFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// True on every rank when every rank holds the same values.
func identicalEverywhere(_ values: [Double], world: Communicator) throws -> Bool {
    var high = values, low = values
    try world.allreduce(&high, .max)
    try world.allreduce(&low, .min)
    return high == low
}

/// One (n, nb) case: values, vectors, the top k (values and vectors). Returns a summary
/// on rank 0; throws CheckFailure on every rank on a mismatch (rank 0 compares, and the
/// ranks agree before the next collective, so that one failing rank cannot hang the job).
func checkCase(n: Int, nb: Int, top: Int, elpa: Bool, world: Communicator) throws -> String {
    var summary = ""
    var failure: String? = nil
    do {
        summary = try compareCase(n: n, nb: nb, top: top, elpa: elpa, world: world)
    } catch let error as CheckFailure {
        failure = error.description
    }
    if try world.agree(status: failure == nil ? 0 : 1).status != 0 {
        throw CheckFailure(failure ?? "n=\(n) nb=\(nb): rank 0 found a mismatch")
    }
    return summary
}

/// `checkCase` before the agreement: throws CheckFailure on rank 0 only (after every
/// collective of the case), or a DistributedEigenError / MPIError on every rank.
func compareCase(n: Int, nb: Int, top: Int, elpa: Bool, world: Communicator) throws -> String {
    let seed = UInt64(n * 1000 + nb)
    let blocks = myBlocks(n: n, nb: nb, seed: seed, world: world)
    let matrix = world.isRoot ? fullMatrix(n: n, seed: seed) : []
    let reference = world.isRoot ? ((try? SymmetricEigen.compute(matrix: matrix, n: n, vectors: false).values) ?? []) : []
    let scale = reference.map(abs).max() ?? 1
    var failures: [String] = []
    func compare(_ got: [Double], _ want: ArraySlice<Double>, _ what: String) -> Double {
        guard got.count == want.count else { failures.append("\(what): \(got.count) values instead of \(want.count)"); return .infinity }
        let error = zip(got, want).map { abs($0 - $1) }.max() ?? 0
        if !(error <= 1e-10 * scale) { failures.append("\(what): eigenvalues differ by \(error) (max |λ| \(scale))") }
        return error / scale
    }

    // Values only (pdsyevr, all).
    let valuesOnly = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: false, top: nil, world: world)
    if !(try identicalEverywhere(valuesOnly.values, world: world)) { failures.append("values differ between ranks") }
    if valuesOnly.vectors != nil { failures.append("values-only solve returned vectors") }
    var worstValues = 0.0
    if world.isRoot { worstValues = max(worstValues, compare(valuesOnly.values, reference[...], "values")) }

    // All pairs (pdsyevd).
    let all = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: true, top: nil, world: world)
    if !(try identicalEverywhere(all.values, world: world)) { failures.append("vector-run values differ between ranks") }
    // (A missing matrix is the same on every rank: the returned shape is global.)
    guard let allVectors = all.vectors, allVectors.columns == n else { throw CheckFailure("no eigenvectors returned") }
    let allRead = try roundTrip(allVectors, count: n, label: "all", world: world, failures: &failures)
    var residuals = (0.0, 0.0)
    if world.isRoot, let allRead {
        worstValues = max(worstValues, compare(all.values, reference[...], "pdsyevd values"))
        residuals = scaledResiduals(matrix: matrix, n: n, values: all.values, vectors: allRead)
    }

    // The top k: values, then pairs (pdsyevr, range 'I').
    let k = min(top, n)
    let topValues = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: false, top: top, world: world)
    let topPairs = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: true, top: top, world: world)
    guard let topVectors = topPairs.vectors, topVectors.columns == k else { throw CheckFailure("no top-\(k) eigenvectors returned") }
    let topRead = try roundTrip(topVectors, count: k, label: "top", world: world, failures: &failures)
    var topResiduals = (0.0, 0.0)
    if world.isRoot, let topRead {
        worstValues = max(worstValues, compare(topValues.values, reference[(n - k)...], "top \(k) values"))
        worstValues = max(worstValues, compare(topPairs.values, reference[(n - k)...], "top \(k) pair values"))
        topResiduals = scaledResiduals(matrix: matrix, n: n, values: topPairs.values, vectors: topRead)
    }
    // ELPA: values (two-stage), all pairs with each stage, on blocks split to its size.
    var elpaResiduals: [(String, Double)] = []
    if elpa {
    let elpaValues = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: false, top: nil,
                                              library: .elpa(stage: 2), world: world)
    if !(try identicalEverywhere(elpaValues.values, world: world)) { failures.append("ELPA values differ between ranks") }
    if world.isRoot { worstValues = max(worstValues, compare(elpaValues.values, reference[...], "ELPA 2-stage values")) }
    for stage in [1, 2] {
        let pairs = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: true, top: nil,
                                             library: .elpa(stage: stage), world: world)
        guard let vectors = pairs.vectors, vectors.columns == n else { throw CheckFailure("no ELPA eigenvectors returned") }
        let read = try roundTrip(vectors, count: n, label: "elpa\(stage)", world: world, failures: &failures)
        if world.isRoot, let read {
            worstValues = max(worstValues, compare(pairs.values, reference[...], "ELPA \(stage)-stage pair values"))
            let r = scaledResiduals(matrix: matrix, n: n, values: pairs.values, vectors: read)
            elpaResiduals += [("ELPA \(stage)-stage residual", r.0), ("ELPA \(stage)-stage orthogonality", r.1)]
        }
    }
    }
    for (name, value) in [("residual", residuals.0), ("orthogonality", residuals.1),
                          ("top residual", topResiduals.0), ("top orthogonality", topResiduals.1)] + elpaResiduals
    where !(value <= SymmetricEigen.residualThreshold) {
        failures.append("\(name) \(value) exceeds \(SymmetricEigen.residualThreshold)")
    }
    if !failures.isEmpty { throw CheckFailure("n=\(n) nb=\(nb): " + failures.joined(separator: "; ")) }
    return String(format: "n=%d nb=%d: values %.1e, residual %.2f, orthogonality %.2f, top %d residual %.2f",
                  n, nb, worstValues, residuals.0, residuals.1, k, topResiduals.0)
}

/// A NaN in one rank's block: every rank must throw .nonFinite at its place.
func checkNonFinite(world: Communicator) throws -> String {
    let n = 45, nb = 7, row = 3, column = 40
    var blocks = myBlocks(n: n, nb: nb, seed: 1, world: world)
    for index in blocks.indices where blocks[index].row == row / nb && blocks[index].column == column / nb {
        blocks[index].values[(row % nb) * (min(n, (column / nb + 1) * nb) - column / nb * nb) + column % nb] = .nan
    }
    var caught: DistributedEigenError? = nil
    do {
        _ = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: true, top: nil, world: world)
    } catch let error as DistributedEigenError {
        caught = error
    }
    let ok: Int32 = caught == .nonFinite(row: row, column: column) ? 0 : 1
    if try world.allreduce(ok, .max) != 0 { throw CheckFailure("a NaN at (\(row), \(column)) gave \(String(describing: caught)) on rank \(world.rank)") }
    return "NaN refused"
}

/// Blocks given twice, or by no rank, and an unwritable vector file: every rank must
/// throw the same error.
func checkRefusals(world: Communicator) throws -> String {
    let n = 45, nb = 7
    let blocks = myBlocks(n: n, nb: nb, seed: 1, world: world)
    func outcome(_ body: () throws -> Void) -> DistributedEigenError? {
        do { try body() } catch let error as DistributedEigenError { return error } catch { return nil }
        return nil
    }
    var twice = blocks
    if world.isRoot, let first = blocks.first { twice.append(first) }
    var missing = blocks
    if world.rank == world.size - 1 { missing.removeLast() }
    let vectors = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: true, top: nil, world: world).vectors!
    let results = [
        outcome { _ = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: twice, vectors: false, top: nil, world: world) },
        outcome { _ = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: missing, vectors: false, top: 3, world: world) },
        outcome { try ScaLAPACKEigen.writeVectors(vectors, columns: n, path: "/nonexistent-directory/v.npy", dataOffset: 128, world: world) },
    ]
    let expected: [(DistributedEigenError?) -> Bool] = [
        { if case .invalidBlocks(let m) = $0 { return m.contains("more than once") }; return false },
        { if case .invalidBlocks(let m) = $0 { return m.contains("no rank") }; return false },
        { if case .io(let m) = $0 { return m.contains("/nonexistent-directory/v.npy") }; return false },
    ]
    let ok: Int32 = zip(results, expected).allSatisfy { $1($0) } ? 0 : 1
    if try world.allreduce(ok, .max) != 0 { throw CheckFailure("refusals on rank \(world.rank): \(results.map { String(describing: $0) })") }
    return "bad blocks and paths refused"
}

func runSuite(world: Communicator) -> Int32 {
    var lines: [String] = []
    var failure: String? = nil
    do {
        // ELPA too on (45, 7), (6, 7) (one block: fewer blocks than processes on 2+ ranks,
        // solved by ScaLAPACK instead), and (300, 128) and (150, 100): blocks split to 64 and 50.
        for (n, nb, elpa) in [(45, 7, true), (200, 32, false), (6, 7, true), (64, 16, false), (300, 128, true), (150, 100, true)] {
            lines.append(try checkCase(n: n, nb: nb, top: 5, elpa: elpa, world: world))
        }
        lines.append(try checkNonFinite(world: world))
        lines.append(try checkRefusals(world: world))
    } catch {
        failure = String(describing: error)
    }
    // Rank 0 alone compares; share the verdict so that every rank exits alike.
    let status = (try? world.agree(status: failure == nil ? 0 : 1).status) ?? 1
    if world.isRoot {
        let grid = "\(world.size) rank(s)"
        if status == 0 {
            print("scalapack-check: ok, \(grid): " + lines.joined(separator: "; "))
        } else {
            FileHandle.standardError.write(Data("scalapack-check: FAILED, \(grid): \(failure ?? "another rank failed")\n".utf8))
        }
    } else if let failure {
        FileHandle.standardError.write(Data("scalapack-check: rank \(world.rank): \(failure)\n".utf8))
    }
    return status == 0 ? 0 : 1
}

/// Times the all-pairs solve (or, with --lapack, LAPACK's dsyevd on rank 0) for n x n.
func runBench(n: Int, nb: Int, lapack: Bool, world: Communicator) throws -> Int32 {
    let seed: UInt64 = 7
    if lapack {
        guard world.isRoot else { return 0 }
        let matrix = fullMatrix(n: n, seed: seed)
        let start = MPIEnvironment.wallTime()
        let result = try SymmetricEigen.compute(matrix: matrix, n: n, vectors: true)
        let seconds = MPIEnvironment.wallTime() - start
        print(String(format: "scalapack-check bench: LAPACK dsyevd (SymmetricEigen.compute, with its 16-column check) n=%d, %d BLAS thread(s), %@ kernel: %.3f s (max λ %.6g)",
                     n, BLASLibrary.threadCount, BLASLibrary.coreName, seconds, result.values.last ?? 0))
        return 0
    }
    let blocks = myBlocks(n: n, nb: nb, seed: seed, world: world)
    try world.barrier()
    let start = MPIEnvironment.wallTime()
    let result = try ScaLAPACKEigen.solve(n: n, blockSize: nb, blocks: blocks, vectors: true, top: nil, world: world)
    let seconds = try world.allreduce(MPIEnvironment.wallTime() - start, .max)
    if world.isRoot {
        let v = result.vectors!
        print(String(format: "scalapack-check bench: ScaLAPACK pdsyevd n=%d nb=%d, %d rank(s) on a %d x %d grid, %d BLAS thread(s) each, %@ kernel: %.3f s (max λ %.6g)",
                     n, nb, world.size, v.gridRows, v.gridColumns, BLASLibrary.threadCount, BLASLibrary.coreName, seconds, result.values.last ?? 0))
    }
    return 0
}

let arguments = CommandLine.arguments
func option(_ name: String) -> Int? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return Int(arguments[index + 1])
}

let status: Int32
do {
    status = try MPIEnvironment.run { world -> Int32 in
        if let n = option("--bench") {
            return try runBench(n: n, nb: option("--nb") ?? 256, lapack: arguments.contains("--lapack"), world: world)
        }
        return runSuite(world: world)
    }
} catch {
    FileHandle.standardError.write(Data("scalapack-check: \(error)\n".utf8))
    status = 1
}
exit(status)

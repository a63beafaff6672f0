import CLAPACK

/// Failures of the symmetric eigensolver.
public enum EigenError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The matrix holds NaN or infinity at (row, column): LAPACK would hang or return
    /// plausible nonsense on it, so it is refused beforehand.
    case nonFinite(row: Int, column: Int)
    /// LAPACK reported a failure (its info code).
    case lapack(info: Int32)
    /// The result failed the residual check (the measured value and the threshold).
    case residual(name: String, value: Double, threshold: Double)
    /// The matrix is too large for LAPACK's 32-bit integers.
    case tooLarge(n: Int)
    /// Some eigenvalue is beyond the float64 range (entries near the largest double).
    case overflow(largestEntry: Double)

    public var description: String {
        switch self {
        case .nonFinite(let row, let column):
            return "the kernel has a non-finite entry at (\(row), \(column)); refusing to eigendecompose it"
        case .lapack(let info):
            return "LAPACK dsyevd failed (info = \(info))"
        case .residual(let name, let value, let threshold):
            return "the eigendecomposition failed its check: \(name) = \(value) exceeds \(threshold)"
        case .tooLarge(let n):
            return "a \(n) x \(n) matrix is too large for LAPACK's 32-bit indices"
        case .overflow(let largest):
            return "the kernel's eigenvalues exceed the float64 range (its largest entry is \(largest))"
        }
    }
}

/// The eigendecomposition of a real symmetric matrix, A = V diag(values) V^T.
public struct SymmetricEigen: Sendable {
    /// Eigenvalues in ascending order.
    public var values: [Double]
    /// Eigenvectors, row-major n x n: column j (elements [i * n + j]) belongs to
    /// values[j], as numpy.linalg.eigh returns them. Nil when only values were asked for.
    public var vectors: [Double]?
    /// The order n.
    public var n: Int { values.count }

    /// An eigendecomposition computed elsewhere (e.g. by a distributed solver).
    public init(values: [Double], vectors: [Double]?) {
        self.values = values
        self.vectors = vectors
    }

    /// LAPACK's test threshold for the scaled residuals (xSYT21 in LAPACK's test suite).
    public static let residualThreshold = 60.0

    /// Eigendecomposes the symmetric n x n row-major `matrix` with LAPACK dsyevd.
    ///
    /// Checks that every entry is finite first (throws `.nonFinite`), and checks the
    /// result after: with vectors, the scaled residual ||A V - V Λ|| / (n ||A|| ε) and
    /// ||I - V^T V|| / (n ε) on a sample of columns; without, the trace against the
    /// eigenvalue sum. Only the upper triangle of `matrix` is read.
    public static func compute(matrix: [Double], n: Int, vectors wantVectors: Bool) throws(EigenError) -> SymmetricEigen {
        precondition(matrix.count == n * n, "matrix must be n x n")
        if n > (wantVectors ? 32_766 : 46_340) { throw .tooLarge(n: n) }
        try matrix.withUnsafeBufferPointer { (m: UnsafeBufferPointer<Double>) throws(EigenError) in
            for i in 0..<n {
                let row = m.baseAddress! + i * n
                for j in i..<n where !row[j].isFinite { throw .nonFinite(row: i, column: j) }
            }
        }
        if n == 0 { return SymmetricEigen(values: [], vectors: wantVectors ? [] : nil) }

        // The upper triangle of the row-major array is the lower triangle of the same
        // memory read column-major: LAPACK reads it as 'L', with no transposition.
        var a = matrix
        var w = [Double](repeating: 0, count: n)
        let info = a.withUnsafeMutableBufferPointer { ap in
            w.withUnsafeMutableBufferPointer { wp in
                ntk_dsyevd(CChar(bitPattern: wantVectors ? UInt8(ascii: "V") : UInt8(ascii: "N")), CChar(bitPattern: UInt8(ascii: "L")),
                           Int32(n), ap.baseAddress, Int32(n), wp.baseAddress)
            }
        }
        if info != 0 { throw .lapack(info: info) }
        if w.contains(where: { !$0.isFinite }) {
            var largest = 0.0
            for i in 0..<n { for j in i..<n { largest = max(largest, abs(matrix[i * n + j])) } }
            throw .overflow(largestEntry: largest)
        }

        var result = SymmetricEigen(values: w, vectors: nil)
        if wantVectors {
            // Column-major V: column j is contiguous. Transpose in place, in blocks, to
            // row-major so that column j of the row-major array is eigenvector j.
            a.withUnsafeMutableBufferPointer { ap in Self.transposeInPlace(ap.baseAddress!, n: n) }
            result.vectors = a
            try result.checkResidual(matrix: matrix, sampleColumns: 16)
        } else {
            try result.checkTrace(matrix: matrix)
        }
        return result
    }

    static func transposeInPlace(_ p: UnsafeMutablePointer<Double>, n: Int) {
        let block = 32
        var i0 = 0
        while i0 < n {
            var j0 = i0
            while j0 < n {
                for i in i0..<min(n, i0 + block) {
                    for j in max(j0, i + 1)..<max(max(j0, i + 1), min(n, j0 + block)) {
                        let t = p[i * n + j]
                        p[i * n + j] = p[j * n + i]
                        p[j * n + i] = t
                    }
                }
                j0 += block
            }
            i0 += block
        }
    }

    /// The scaled residuals ||A V_S - V_S Λ_S||_1 / (n ||A||_1 ε) and
    /// ||I - V_S^T V_S||_1 / (n ε) over a deterministic sample S of columns (all columns
    /// when `sampleColumns` >= n), as LAPACK's xSYT21 measures them. A is read from its
    /// upper triangle.
    public func scaledResiduals(matrix: [Double], sampleColumns: Int) -> (decomposition: Double, orthogonality: Double) {
        guard let v = vectors, n > 0 else { return (0, 0) }
        let columns: [Int]
        if sampleColumns >= n {
            columns = Array(0..<n)
        } else {
            // Extremes plus an even spread: where failures show first.
            var set = Set([0, n - 1])
            for s in 0..<sampleColumns { set.insert(s * (n - 1) / max(1, sampleColumns - 1)) }
            columns = set.sorted()
        }
        let s = columns.count
        let eps = Double.ulpOfOne / 2
        // The full symmetric A from its upper triangle, and the sampled columns V_S (n x s).
        var full = matrix
        for i in 0..<n { for j in (i + 1)..<n { full[j * n + i] = full[i * n + j] } }
        var vs = [Double](repeating: 0, count: n * s)
        for i in 0..<n { for (c, j) in columns.enumerated() { vs[i * s + c] = v[i * n + j] } }
        var av = [Double](repeating: 0, count: n * s)
        var gram = [Double](repeating: 0, count: s * s)
        let vst = (0..<(s * n)).map { vs[($0 % n) * s + $0 / n] }  // V_Sᵀ, s x n
        full.withUnsafeBufferPointer { fp in
            vs.withUnsafeBufferPointer { vp in
                av.withUnsafeMutableBufferPointer { out in
                    GEMM.multiply(m: n, n: s, k: n, a: fp.baseAddress!, lda: n, b: vp.baseAddress!, ldb: s, c: out.baseAddress!, ldc: s)
                }
            }
        }
        vst.withUnsafeBufferPointer { tp in
            gram.withUnsafeMutableBufferPointer { out in
                GEMM.multiplyTransposed(m: s, n: s, k: n, a: tp.baseAddress!, lda: n, b: tp.baseAddress!, ldb: n, c: out.baseAddress!, ldc: s)
            }
        }
        var normA = 0.0
        for j in 0..<n {
            var sum = 0.0
            for i in 0..<n { sum += abs(full[i * n + j]) }
            normA = max(normA, sum)
        }
        var maxResidual = 0.0
        for (c, j) in columns.enumerated() {
            var sum = 0.0
            for i in 0..<n { sum += abs(av[i * s + c] - values[j] * vs[i * s + c]) }
            maxResidual = max(maxResidual, sum)
        }
        var maxOrth = 0.0
        for a in 0..<s {
            var sum = 0.0
            for b in 0..<s { sum += abs((a == b ? 1 : 0) - gram[a * s + b]) }
            maxOrth = max(maxOrth, sum)
        }
        let decomposition = normA > 0 ? maxResidual / (Double(n) * normA * eps) : maxResidual / (Double(n) * eps)
        return (decomposition, maxOrth / (Double(n) * eps))
    }

    func checkResidual(matrix: [Double], sampleColumns: Int) throws(EigenError) {
        let (decomposition, orthogonality) = scaledResiduals(matrix: matrix, sampleColumns: sampleColumns)
        let limit = Self.residualThreshold
        if !(decomposition <= limit) { throw .residual(name: "||A V - V L|| / (n ||A|| eps)", value: decomposition, threshold: limit) }
        if !(orthogonality <= limit) { throw .residual(name: "||I - V^T V|| / (n eps)", value: orthogonality, threshold: limit) }
    }

    func checkTrace(matrix: [Double]) throws(EigenError) {
        var trace = 0.0
        var normA = 0.0
        for i in 0..<n {
            trace += matrix[i * n + i]
            for j in i..<n { normA = max(normA, abs(matrix[i * n + j])) }
        }
        let sum = values.reduce(0, +)
        let scaled = abs(trace - sum) / (Double(n) * max(normA, .leastNormalMagnitude) * Double.ulpOfOne * Double(n))
        if !(scaled <= Self.residualThreshold) {
            throw .residual(name: "|trace - sum(eigenvalues)| / (n^2 max|A| eps)", value: scaled, threshold: Self.residualThreshold)
        }
    }
}

import Foundation

/// The K largest eigenpairs of a symmetric n × n operator known only through products
/// Θ X, by block Lanczos with full reorthogonalization and explicit restarts (the Krylov
/// space of the current Ritz vectors).
///
/// Each cycle builds the basis Q = [X₀, ΘX₀, Θ²X₀, …] block by block (b vectors a block, m
/// blocks), orthonormalized against everything before it twice (classical Gram–Schmidt
/// by GEMM, then modified Gram–Schmidt within the block), keeps ΘQ, and solves the small
/// projected problem H = Qᵀ Θ Q (Rayleigh–Ritz, LAPACK). The Ritz pairs (θᵢ, xᵢ) of the
/// top b restart the next cycle; their residuals rᵢ = Θxᵢ − θᵢxᵢ come from ΘQ without
/// another product. The run stops when every one of the top K has ‖rᵢ‖ ≤ tolerance · |θ_max|;
/// then |λᵢ − θᵢ| ≤ ‖rᵢ‖ (and ≤ ‖rᵢ‖²/gap), the bound `maxResidual` reports.
///
/// Vectors are stored as rows: a block of b vectors is a row-major (b, n) array. The
/// `apply` closure gets such a block and returns Θ times it in the same layout; it may be
/// collective (every rank calls `largest` with the same arguments and gets the same
/// products, so every rank follows the same steps).
public enum BlockKrylov {
    public struct Result: Sendable {
        /// The K largest eigenvalues, ascending.
        public var values: [Double]
        /// Row-major (n, K): column j belongs to `values[j]`.
        public var vectors: [Double]
        /// max ‖Θxᵢ − θᵢxᵢ‖ over the K pairs: a bound on each eigenvalue's error.
        public var maxResidual: Double
        /// The residuals Θxⱼ − θⱼxⱼ as rows, row-major (K, n): row j belongs to `values[j]`.
        public var residuals: [Double]
        /// Restart cycles and products with Θ (blocks of b vectors).
        public var cycles: Int
        public var products: Int
        public var blockSize: Int
    }

    public enum Failure: Error, CustomStringConvertible {
        case notConverged(cycles: Int, residual: Double, tolerance: Double)
        case projected(EigenError)

        public var description: String {
            switch self {
            case let .notConverged(cycles, residual, tolerance):
                return "block Lanczos did not converge in \(cycles) cycles (largest residual \(residual), tolerance \(tolerance))"
            case .projected(let error): return "the projected eigenproblem failed: \(error)"
            }
        }
    }

    /// The `k` largest eigenpairs (k ≤ n). `tolerance` is relative to |λ_max|.
    public static func largest(_ k: Int, n: Int, tolerance: Double = 1e-11, maxCycles: Int = 60, seed: UInt64 = 1,
                               apply: ([Double], Int) throws -> [Double]) throws -> Result {
        precondition(k >= 1 && k <= n)
        let b = min(n, max(k + 8, 16))
        let blocks = max(2, min(8, n / b))
        var generator = SplitMix(seed: seed)
        var x = (0..<(b * n)).map { _ in generator.uniform() - 0.5 }
        _ = orthonormalize(&x, count: b, n: n, against: [], basisCount: 0, generator: &generator)
        var ax = try apply(x, b)
        var products = 1
        for cycle in 1...maxCycles {
            // The basis of this cycle and Θ times it, b vectors a block.
            var q = x, aq = ax
            var count = b
            for _ in 1..<blocks where count + b <= n {
                var w = Array(aq[((count - b) * n)..<(count * n)])
                let kept = orthonormalize(&w, count: b, n: n, against: q, basisCount: count, generator: &generator)
                if kept == 0 { break }
                let aw = try apply(w, b)
                products += 1
                q += w
                aq += aw
                count += b
            }
            // Rayleigh–Ritz: H = Q (ΘQ)ᵀ, symmetrized (its asymmetry is rounding).
            var h = [Double](repeating: 0, count: count * count)
            GEMM.multiplyTransposed(m: count, n: count, k: n, a: q, lda: n, b: aq, ldb: n, c: &h, ldc: count)
            for i in 0..<count { for j in (i + 1)..<count { let s = 0.5 * (h[i * count + j] + h[j * count + i]); h[i * count + j] = s; h[j * count + i] = s } }
            let projected: SymmetricEigen
            do { projected = try SymmetricEigen.compute(matrix: h, n: count, vectors: true) } catch { throw Failure.projected(error) }
            // The top b Ritz vectors, largest first: Yᵀ (b × count) times Q and ΘQ.
            var yt = [Double](repeating: 0, count: b * count)
            for r in 0..<b { for i in 0..<count { yt[r * count + i] = projected.vectors![i * count + (count - 1 - r)] } }
            let theta = (0..<b).map { projected.values[count - 1 - $0] }
            var ritz = [Double](repeating: 0, count: b * n), aritz = [Double](repeating: 0, count: b * n)
            GEMM.multiply(m: b, n: n, k: count, a: yt, lda: count, b: q, ldb: n, c: &ritz, ldc: n)
            GEMM.multiply(m: b, n: n, k: count, a: yt, lda: count, b: aq, ldb: n, c: &aritz, ldc: n)
            var residuals = [Double](repeating: 0, count: k)
            var residualRows = [Double](repeating: 0, count: k * n)
            for r in 0..<k {
                var s = 0.0
                for p in 0..<n {
                    let e = aritz[r * n + p] - theta[r] * ritz[r * n + p]
                    residualRows[(k - 1 - r) * n + p] = e
                    s += e * e
                }
                residuals[r] = s.squareRoot()
            }
            let scale = max(abs(theta[0]), Double.leastNormalMagnitude)
            let worst = residuals.max()!
            if worst <= tolerance * scale || count >= n {
                // Ascending, as LAPACK: column j of (n, K) belongs to values[j].
                var vectors = [Double](repeating: 0, count: n * k)
                for j in 0..<k {
                    let r = k - 1 - j
                    for p in 0..<n { vectors[p * k + j] = ritz[r * n + p] }
                }
                return Result(values: (0..<k).map { theta[k - 1 - $0] }, vectors: vectors, maxResidual: worst,
                              residuals: residualRows, cycles: cycle, products: products, blockSize: b)
            }
            x = ritz
            ax = aritz
            if cycle == maxCycles {
                throw Failure.notConverged(cycles: cycle, residual: worst / scale, tolerance: tolerance)
            }
        }
        throw Failure.notConverged(cycles: maxCycles, residual: .nan, tolerance: tolerance)
    }

    /// Orthonormalizes the `count` rows of `w` against the first `basisCount` rows of
    /// `basis` (twice, by GEMM) and among themselves: by the Gram matrix G = W Wᵀ = U S Uᵀ,
    /// W ← S^(-1/2) Uᵀ W (BLAS-sized work, twice). When G is near singular (the Krylov space
    /// is exhausted), by modified Gram–Schmidt instead, a vanishing row replaced by a
    /// random direction orthogonalized the same way. Returns `count`, or 0 when the space
    /// is full.
    static func orthonormalize(_ w: inout [Double], count: Int, n: Int, against basis: [Double], basisCount: Int,
                               generator: inout SplitMix) -> Int {
        if basisCount + count > n { return 0 }
        func project(_ w: inout [Double]) {
            for _ in 0..<2 where basisCount > 0 {
                // C = W Bᵀ (count × basisCount); W -= C B.
                var c = [Double](repeating: 0, count: count * basisCount)
                GEMM.multiplyTransposed(m: count, n: basisCount, k: n, a: w, lda: n, b: basis, ldb: n, c: &c, ldc: basisCount)
                GEMM.multiply(m: count, n: n, k: basisCount, alpha: -1, a: c, lda: basisCount, b: basis, ldb: n, beta: 1, c: &w, ldc: n)
            }
        }
        project(&w)
        // Twice: projection, then the block's own orthonormalization (whose scaling can
        // magnify rounding along the basis, which the second projection removes).
        var attempt = w
        if symmetricOrthonormalize(&attempt, count: count, n: n) {
            project(&attempt)
            if symmetricOrthonormalize(&attempt, count: count, n: n) {
                w = attempt
                return count
            }
        }
        for r in 0..<count {
            var attempts = 0
            while true {
                for _ in 0..<2 {
                    for s in 0..<r {
                        var dot = 0.0
                        for p in 0..<n { dot += w[r * n + p] * w[s * n + p] }
                        for p in 0..<n { w[r * n + p] -= dot * w[s * n + p] }
                    }
                }
                var norm = 0.0
                for p in 0..<n { norm += w[r * n + p] * w[r * n + p] }
                norm = norm.squareRoot()
                if norm > 1e-10 || attempts >= 3 {
                    let inverse = norm > 0 ? 1 / norm : 0
                    for p in 0..<n { w[r * n + p] *= inverse }
                    break
                }
                // A dependent direction: try a random one, orthogonal to the basis.
                attempts += 1
                for p in 0..<n { w[r * n + p] = generator.uniform() - 0.5 }
                if basisCount > 0 {
                    var row = Array(w[(r * n)..<((r + 1) * n)])
                    for _ in 0..<2 {
                        var c = [Double](repeating: 0, count: basisCount)
                        GEMM.multiplyTransposed(m: 1, n: basisCount, k: n, a: row, lda: n, b: basis, ldb: n, c: &c, ldc: basisCount)
                        GEMM.multiply(m: 1, n: n, k: basisCount, alpha: -1, a: c, lda: basisCount, b: basis, ldb: n, beta: 1, c: &row, ldc: n)
                    }
                    for p in 0..<n { w[r * n + p] = row[p] }
                }
            }
        }
        return count
    }

    /// W ← S^(-1/2) Uᵀ W with W Wᵀ = U S Uᵀ; false when W Wᵀ is too close to singular
    /// (condition over 1e12: the rows would be rounding noise magnified).
    static func symmetricOrthonormalize(_ w: inout [Double], count: Int, n: Int) -> Bool {
        do {
            var g = [Double](repeating: 0, count: count * count)
            GEMM.multiplyTransposed(m: count, n: count, k: n, a: w, lda: n, b: w, ldb: n, c: &g, ldc: count)
            guard let eigen = try? SymmetricEigen.compute(matrix: g, n: count, vectors: true), let u = eigen.vectors,
                  let largest = eigen.values.last, largest > 0, eigen.values[0] > 1e-12 * largest else { return false }
            // M = S^(-1/2) Uᵀ (count × count), row i = column i of U scaled.
            var m = [Double](repeating: 0, count: count * count)
            for i in 0..<count {
                let scale = 1 / eigen.values[i].squareRoot()
                for j in 0..<count { m[i * count + j] = scale * u[j * count + i] }
            }
            var next = [Double](repeating: 0, count: count * n)
            GEMM.multiply(m: count, n: n, k: count, a: m, lda: count, b: w, ldb: n, c: &next, ldc: n)
            w = next
        }
        return true
    }

    /// A small deterministic generator for start vectors.
    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func uniform() -> Double {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Double(z >> 11) * 0x1.0p-53
        }
    }
}

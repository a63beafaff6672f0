import Foundation

/// The spectral density of a symmetric n × n operator known only through products A X, by
/// stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; docs/maths.md §9).
///
/// For each of `probes` Rademacher vectors z (entries ±1), m steps of Lanczos from
/// v₁ = z/√n give a tridiagonal T_m = U diag(θ) Uᵀ; its Ritz values θ_j with weights
/// τ_j = (e₁ᵀu_j)² are the m-node Gauss quadrature of the measure Σᵢ (vᵢᵀv₁)² δ(λ − λᵢ), so
/// zᵀ f(A) z = n Σ_j τ_j f(θ_j) + (the rule's error, zero for polynomials of degree < 2m).
/// Averaged over the probes, n Σ_j τ_j f(θ_j) estimates tr f(A), and (1/probes) Σ τ_j δ(λ − θ_j)
/// the spectral density (1/n) Σᵢ δ(λ − λᵢ). The probes' spread gives each estimate's
/// standard error.
///
/// All probes advance together: each step is one product of the operator with the block of
/// `probes` vectors (one reduction when the operator is distributed). Every Lanczos vector
/// is reorthogonalized (twice, classical Gram–Schmidt) against its own probe's basis; a
/// probe whose Krylov space closes (β below 1e-12 of the largest α) stops there, its rule then
/// exact. Vectors are stored as rows, as in `BlockKrylov`: `apply` gets a row-major
/// (count, n) block and returns A times it in the same layout; it may be collective.
public enum StochasticLanczos {
    /// One probe's quadrature rule: Ritz values (ascending), weights (summing to 1), and
    /// the squared norm of the probe it started from (n, or less when deflated).
    public struct Rule: Sendable, Equatable {
        public var nodes: [Double]
        public var weights: [Double]
        public var scale: Double
    }

    public struct Result: Sendable {
        /// The operator's order.
        public var n: Int
        /// One rule per probe.
        public var rules: [Rule]
        /// Products of the operator with the block of probes.
        public var products: Int
        /// The eigenvalues deflated (known exactly, counted as they are; empty without deflation).
        public var deflated: [Double] = []

        /// One probe's estimate of tr f(A): Σ f(deflated) + ‖Pz‖² Σ_j τ_j f(θ_j).
        func perProbe(_ rule: Rule, _ f: (Double) -> Double) -> Double {
            deflated.reduce(0) { $0 + f($1) } + rule.scale * zip(rule.nodes, rule.weights).reduce(0) { $0 + $1.1 * f($1.0) }
        }

        /// The estimate of tr f(A) = Σᵢ f(λᵢ): the mean over probes, and its standard error
        /// (the probes' standard deviation / √probes; nil for one probe).
        public func trace(of f: (Double) -> Double) -> (estimate: Double, standardError: Double?) {
            Self.meanAndError(rules.map { perProbe($0, f) })
        }

        /// An estimate g(tr f₁(A), tr f₂(A), …) and its jackknife standard error over the probes.
        public func ratio(_ functions: [(Double) -> Double], _ combine: ([Double]) -> Double) -> (estimate: Double, standardError: Double?) {
            let perProbe = rules.map { rule in functions.map { f in self.perProbe(rule, f) } }
            let count = perProbe.count
            func mean(excluding skip: Int?) -> [Double] {
                var sums = [Double](repeating: 0, count: functions.count)
                var used = 0
                for (i, values) in perProbe.enumerated() where i != skip {
                    for j in values.indices { sums[j] += values[j] }
                    used += 1
                }
                return sums.map { $0 / Double(used) }
            }
            let estimate = combine(mean(excluding: nil))
            guard count > 1 else { return (estimate, nil) }
            let leaveOut = (0..<count).map { combine(mean(excluding: $0)) }
            let average = leaveOut.reduce(0, +) / Double(count)
            let variance = leaveOut.reduce(0) { $0 + ($1 - average) * ($1 - average) } * Double(count - 1) / Double(count)
            return (estimate, variance.squareRoot())
        }

        /// The smallest and largest Ritz values over all probes (the largest is a lower bound
        /// on λ_max that converges within a few steps; the smallest an upper bound on λ_min).
        public var ritzRange: ClosedRange<Double> {
            let all = rules.flatMap(\.nodes) + deflated
            return (all.min() ?? 0)...(all.max() ?? 0)
        }

        /// The estimated fraction of eigenvalues ≤ λ: the deflated ones exactly, the other
        /// n − K as (1/probes) Σ Σ τ_j [θ_j ≤ λ] (each probe's rule a probability measure, so
        /// the fractions reach 1 exactly).
        public func cumulative(_ lambda: Double) -> Double {
            let exact = Double(deflated.filter { $0 <= lambda }.count)
            let estimated = Double(n - deflated.count) * rules.reduce(0) { total, rule in
                total + zip(rule.nodes, rule.weights).reduce(0) { $1.0 <= lambda ? $0 + $1.1 : $0 }
            } / Double(max(rules.count, 1))
            return (exact + estimated) / Double(n)
        }

        static func meanAndError(_ values: [Double]) -> (estimate: Double, standardError: Double?) {
            let count = Double(values.count)
            let mean = values.reduce(0, +) / count
            guard values.count > 1 else { return (mean, nil) }
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (count - 1)
            return (mean, (variance / count).squareRoot())
        }
    }

    /// The Rademacher probes of `run`, row-major (count, n): the same for every rank and run
    /// with the same seed.
    public static func probes(n: Int, count: Int, seed: UInt64) -> [Double] {
        var generator = BlockKrylov.SplitMix(seed: seed)
        return (0..<(count * n)).map { _ in generator.uniform() < 0.5 ? -1 : 1 }
    }

    /// `steps` Lanczos steps (at most n) from each of `probes` Rademacher vectors.
    ///
    /// With `deflation` (K orthonormal eigenvectors of A, row-major (n, K), and their
    /// eigenvalues), the eigenvalues are counted exactly and the quadrature runs on the rest:
    /// the probes are projected by P = I − VVᵀ and the operator is P A P, so tr f(A) =
    /// Σ f(λ_V) + zᵀP f(A) P z in expectation. Deflating the top of a kernel's spectrum removes
    /// most of the probes' variance, which the large eigenvalues dominate.
    public static func run(n: Int, probes: Int, steps: Int, seed: UInt64 = 1,
                           deflation: (vectors: [Double], values: [Double])? = nil,
                           apply: ([Double], Int) throws -> [Double]) throws -> Result {
        precondition(n >= 1 && probes >= 1 && steps >= 1)
        let m = min(steps, n)
        let kDeflated = deflation?.values.count ?? 0
        func project(_ x: inout [Double], count: Int) {
            guard let deflation else { return }
            _ = LanczosSteps.project(&x, rows: count, n: n, vectors: deflation.vectors, k: kDeflated)
        }
        var v = Self.probes(n: n, count: probes, seed: seed)
        project(&v, count: probes)
        project(&v, count: probes)
        var scales = [Double](repeating: Double(n), count: probes)
        for p in 0..<probes {
            var norm = 0.0
            for e in 0..<n { norm += v[p * n + e] * v[p * n + e] }
            scales[p] = norm
            let inverse = norm > 0 ? 1 / norm.squareRoot() : 0
            for e in 0..<n { v[p * n + e] *= inverse }
        }
        func applyDeflated(_ x: [Double], _ count: Int) throws -> [Double] {
            var y = try apply(x, count)
            project(&y, count: count)
            return y
        }
        // basis[p][j] is probe p's j-th Lanczos vector.
        var basis = [[Double]](repeating: [], count: probes)
        for p in 0..<probes { basis[p].reserveCapacity(m * n); basis[p] += v[(p * n)..<((p + 1) * n)] }
        var alpha = [[Double]](repeating: [], count: probes), beta = [[Double]](repeating: [], count: probes)
        var active = [Bool](repeating: true, count: probes)
        var products = 0
        for step in 0..<m {
            var w = try applyDeflated(v, probes)
            products += 1
            var next = [Double](repeating: 0, count: probes * n)
            for p in 0..<probes where active[p] {
                let row = p * n
                var wp = Array(w[row..<(row + n)])
                let vp = Array(v[row..<(row + n)])
                let a = dot(vp, wp)
                alpha[p].append(a)
                // Full reorthogonalization against this probe's basis, twice.
                LanczosSteps.reorthogonalize(&wp, against: basis[p], count: step + 1, n: n)
                let b = dot(wp, wp).squareRoot()
                let largest = alpha[p].reduce(0) { Swift.max($0, abs($1)) }
                if step == m - 1 || !(b > 1e-12 * Swift.max(largest, Double.leastNormalMagnitude)) {
                    active[p] = false
                    continue
                }
                beta[p].append(b)
                let inverse = 1 / b
                for e in 0..<n { next[row + e] = wp[e] * inverse }
                basis[p] += next[row..<(row + n)]
            }
            w = []
            if !active.contains(true) { break }
            v = next
        }
        var rules: [Rule] = []
        for p in 0..<probes {
            let size = alpha[p].count
            let eigen = try LanczosSteps.tridiagonal(alpha: alpha[p], beta: beta[p])
            let u = eigen.vectors!
            // Column j of U belongs to θ_j; its first entry is row 0.
            let weights = (0..<size).map { u[$0] * u[$0] }
            rules.append(Rule(nodes: eigen.values, weights: weights, scale: scales[p]))
        }
        return Result(n: n, rules: rules, products: products, deflated: deflation?.values ?? [])
    }

    private static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for e in a.indices { s += a[e] * b[e] }
        return s
    }
}

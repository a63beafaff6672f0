import Foundation

/// A posteriori error bounds for the Lanczos approximations of gradient-descent
/// dynamics that `KrylovFunction.apply` computes (docs/maths.md §10, "Error bounds").
///
/// A = Θ + δI is symmetric positive semidefinite. W = [V, Q] joins the K deflated vectors
/// (ΘV = VΛ + R) and the Lanczos basis of PΘP from Pb (PΘPQ = QT + h q eₘᵀ + F, P = I − VVᵀ).
/// Then A W = W Ĥ + E with the (K + m) × (K + m) matrix
///
///     Ĥ = [ Λ + δ + VᵀR   RᵀQ  ]        E = [ (I − WWᵀ)R,  h q eₘᵀ + F ],
///         [ QᵀR          T + δ ]
///
/// and b = Wβ, β = (Vᵀb, ‖Pb‖e₁). For an entire f (e^{−aλ}, (1 − rλ)ⁿ and their integrals),
/// Cauchy's formula turns A W − W Ĥ = E into the exact error
///
///     f(A)b − W f(Ĥ)β = Σⱼ (ŝⱼᵀβ) f[A, ĥⱼ] E ŝⱼ,      Ĥ = Σⱼ ĥⱼ ŝⱼŝⱼᵀ,
///
/// f[λ, μ] the divided difference. Its Lanczos part is h ψ(A) q with ψ(λ) = Σⱼ (ŝⱼᵀβ)(ŝⱼ)_last
/// f[λ, ĥⱼ], whose norm is at most h max |ψ| over the spectrum ⊂ [δ, λ̄]: the damping of the
/// slow and fast modes is kept, unlike a bound through ‖e^{−tA}‖ ≤ 1. (Below the smallest
/// Ritz value ψ can be large: with δ = 0 nothing excludes an eigenvalue of A there, and the
/// bound says so.) The rest is bounded by
/// Σⱼ |ŝⱼᵀβ| max|f[·, ĥⱼ]| (‖R ŝⱼ^V‖ + ‖F ŝⱼ^Q‖), the F part taken as ‖F‖_F times the
/// smaller of Σⱼ |ŝⱼᵀβ| max|f[·, ĥⱼ]| ‖ŝⱼ^Q‖ and (Σⱼ (ŝⱼᵀβ max|f[·, ĥⱼ]|)²)^{1/2}. What was computed is W f(T̃⁺)β, T̃⁺ =
/// diag(Λ + δ, T + δ) with eigenvalues clamped at 0, so ‖(f(T̃⁺) − f(Ĥ))β‖ (small matrices,
/// exact) completes the bound. At t = ∞ only the residual ‖b − AĈ‖ is bounded (as for CG):
/// ‖β − Ĥx‖ + ‖R x^V‖ + h |x_last| + ‖F‖ ‖x^Q‖ with x = (T̃⁺)⁺β.
///
/// The maxima over [δ, λ̄] ⊇ the spectrum of A, with the certified λ̄ = min(tr A, ‖Θ‖_F + δ)
/// (A ⪰ 0), are taken on a grid: its ends, 600 log-spaced points from max(δ, 1e-14 λ̄), and
/// the eigenvalues of Ĥ. The functions are smooth between grid points, but a maximum on a
/// grid is not a proof: the bound is exact up to that sampling. Steps get no bound when
/// r λ̄ > 2 (past 2/r their functions grow). Not covered either: rounding in the products
/// with Θ and in VᵀQ (the machine's precision times ‖Θ‖), and an A that rounding made
/// slightly indefinite.
extension KrylovFunction {
    /// One time of the dynamics: gradient flow to a = rate · t (a = +∞: kernel regression),
    /// or `count` steps x ← (I − rA) x.
    public enum Dynamics: Sendable {
        case flow(Double)
        case steps(Int, rate: Double)
    }

    /// Bounds for one time and right-hand side (absolute, in the units of b).
    public struct Bound: Sendable {
        /// ‖g(A)b − computed‖ for the train change g = 1 − E; at a = ∞, the residual ‖b − AĈ‖.
        public var train: Double?
        /// ‖C − Ĉ‖ for the coefficients C = ∫₀ᵃ E(σ) b dσ (steps: r Σ_{j<n} E(j) b); nil at
        /// a = ∞. The test predictions' error is at most ‖Θ(X*, X)‖₂ times this.
        public var coefficients: Double?
        /// Whether `train` is a residual (a = ∞) rather than an error bound.
        public var isResidual: Bool
    }

    /// What the bounds need of the deflated pairs: their eigenvalues λ (ascending, as
    /// `BlockKrylov`), R Rᵀ and VᵀR (K × K, row-major) for residual rows R (K, n).
    public struct Deflated: Sendable {
        public var values: [Double]
        public var gram: [Double]
        public var projected: [Double]

        /// From the vectors (n, K) (column j for values[j]) and residual rows (K, n).
        public init(values: [Double], vectors: [Double], residuals: [Double], n: Int) {
            let k = values.count
            precondition(vectors.count == n * k && residuals.count == k * n)
            self.values = values
            var g = [Double](repeating: 0, count: k * k), p = [Double](repeating: 0, count: k * k)
            if k > 0 {
                GEMM.multiplyTransposed(m: k, n: k, k: n, a: residuals, lda: n, b: residuals, ldb: n, c: &g, ldc: k)
                // (VᵀR)[i, j] = Σ_p V[p, i] R[j, p], symmetrized (VᵀΘV − Λ).
                for p0 in 0..<n {
                    for i in 0..<k {
                        let v = vectors[p0 * k + i]
                        for j in 0..<k { p[i * k + j] += v * residuals[j * n + p0] }
                    }
                }
                for i in 0..<k { for j in (i + 1)..<k { let s = 0.5 * (p[i * k + j] + p[j * k + i]); p[i * k + j] = s; p[j * k + i] = s } }
            }
            self.gram = g
            self.projected = p
        }
    }

    /// The bounds of every time for one right-hand side. `shift` is δ, `upper` an upper bound
    /// on λ_max(A) (tr A, or ‖Θ‖_F + δ), `lower` a lower bound on λ_min(A) (δ for Θ ⪰ 0): the
    /// maxima are taken over [lower, upper].
    public static func bounds(_ projection: Projection, deflated: Deflated?, shift: Double, upper: Double, lower: Double,
                              dynamics: [Dynamics]) throws -> [Bound] {
        let space = try Space(projection, deflated: deflated, shift: shift)
        return dynamics.map { time in
            switch time {
            case .flow(let a) where a == .infinity:
                return space.regression()
            case .flow(let a):
                if a == 0 { return Bound(train: 0, coefficients: 0, isResidual: false) }
                return space.bound(train: Entire.decay(a), coefficients: Entire.decayIntegral(a), lower: lower, upper: upper)
            case .steps(let count, let rate):
                if count == 0 { return Bound(train: 0, coefficients: 0, isResidual: false) }
                // Past 2/r the steps' functions grow: no bound unless the whole spectrum is below.
                guard rate * upper <= 2 else { return Bound(train: nil, coefficients: nil, isResidual: false) }
                return space.bound(train: Entire.power(rate, count), coefficients: Entire.powerSum(rate, count), lower: lower, upper: upper)
            }
        }
    }

    /// W's small matrices for one right-hand side.
    struct Space {
        let k: Int, m: Int
        /// Ĥ's eigenvalues and eigenvectors ((K + m)², column j for values[j]).
        let values: [Double], vectors: [Double]
        /// β, and what was computed on: Λ + δ and T + δ's eigenpairs (clamped at 0 by the
        /// functions).
        let beta: [Double]
        let lambda: [Double], theta: [Double], s: [Double]
        let gram: [Double]
        let h: Double, defect: Double

        init(_ p: Projection, deflated: Deflated?, shift: Double) throws {
            let k = p.coefficients.count, m = p.alpha.count
            precondition(k == (deflated?.values.count ?? 0))
            self.k = k
            self.m = m
            let size = k + m
            var hat = [Double](repeating: 0, count: size * size)
            if let deflated {
                for i in 0..<k {
                    for j in 0..<k { hat[i * size + j] = deflated.projected[i * k + j] }
                    hat[i * size + i] += deflated.values[i] + shift
                }
                if p.coupling.count == m * k {
                    for l in 0..<m { for i in 0..<k { hat[i * size + k + l] = p.coupling[l * k + i]; hat[(k + l) * size + i] = p.coupling[l * k + i] } }
                }
            }
            for l in 0..<m {
                hat[(k + l) * size + k + l] = p.alpha[l] + shift
                if l + 1 < m { hat[(k + l) * size + k + l + 1] = p.beta[l]; hat[(k + l + 1) * size + k + l] = p.beta[l] }
            }
            if size > 0 {
                let eigen = try SymmetricEigen.compute(matrix: hat, n: size, vectors: true)
                values = eigen.values
                vectors = eigen.vectors!
            } else {
                values = []
                vectors = []
            }
            beta = p.coefficients + (m > 0 ? [p.norm] + [Double](repeating: 0, count: m - 1) : [])
            lambda = (deflated?.values ?? []).map { $0 + shift }
            if m > 0 {
                let t = try LanczosSteps.tridiagonal(alpha: p.alpha, beta: p.beta)
                theta = t.values.map { $0 + shift }
                s = t.vectors!
            } else {
                theta = []
                s = []
            }
            let gram = deflated?.gram ?? []
            self.gram = gram
            h = p.h
            defect = p.defect
        }

        /// f(T̃⁺)β: what `KrylovFunction.apply` computed, in W's coordinates.
        func computed(_ f: (Double) -> Double) -> [Double] {
            var out = [Double](repeating: 0, count: k + m)
            for i in 0..<k { out[i] = f(Swift.max(lambda[i], 0)) * beta[i] }
            if m > 0 {
                for j in 0..<m {
                    let weight = s[j] * f(Swift.max(theta[j], 0)) * beta[k]
                    for l in 0..<m { out[k + l] += s[l * m + j] * weight }
                }
            }
            return out
        }

        /// ŝⱼᵀβ for every j.
        var weights: [Double] {
            let size = k + m
            return (0..<size).map { j in (0..<size).reduce(0.0) { $0 + vectors[$1 * size + j] * beta[$1] } }
        }

        /// ‖R x‖ for x on the V block (from R Rᵀ).
        func residualNorm(_ x: ArraySlice<Double>) -> Double {
            guard k > 0, !gram.isEmpty else { return 0 }
            let x = Array(x)
            var sum = 0.0
            for i in 0..<k { var t = 0.0; for j in 0..<k { t += gram[i * k + j] * x[j] }; sum += x[i] * t }
            return Swift.max(sum, 0).squareRoot()
        }

        func bound(train: Entire, coefficients: Entire, lower: Double, upper: Double) -> Bound {
            let size = k + m
            guard size > 0 else { return Bound(train: 0, coefficients: 0, isResidual: false) }
            // The grid on [lower, λ̄]: its ends, 600 log-spaced points, Ĥ's eigenvalues.
            let bottom = Swift.max(lower, 1e-14 * upper), points = 600
            var grid: [Double] = [Swift.max(lower, 0)]
            if upper > bottom {
                for p in 0..<points { grid.append(bottom * pow(upper / bottom, Double(p) / Double(points - 1))) }
            }
            grid += values.filter { $0 > lower && $0 < upper }
            let alpha = weights
            // ‖R ŝⱼ^V‖ + ‖F‖ ‖ŝⱼ^Q‖ per j (the second through Cauchy–Schwarz below).
            var rPart = [Double](repeating: 0, count: size), qPart = [Double](repeating: 0, count: size)
            for j in 0..<size {
                var column = [Double](repeating: 0, count: size)
                for i in 0..<size { column[i] = vectors[i * size + j] }
                rPart[j] = residualNorm(column[0..<k])
                qPart[j] = (k..<size).reduce(0.0) { $0 + column[$1] * column[$1] }.squareRoot()
            }
            func one(_ f: Entire) -> Double {
                // (f(T̃⁺) − f(Ĥ))β.
                let mine = computed { f.value($0) }
                var exact = [Double](repeating: 0, count: size)
                for j in 0..<size {
                    let w = alpha[j] * f.value(values[j])
                    for i in 0..<size { exact[i] += vectors[i * size + j] * w }
                }
                let difference = zip(mine, exact).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
                // max |ψ| and max |f[·, ĥⱼ]| over the grid.
                var psi = 0.0
                var largest = [Double](repeating: 0, count: size)
                let last = (0..<size).map { alpha[$0] * vectors[(size - 1) * size + $0] }
                let cores = values.map { f.core($0) }, fs = values.map { f.value($0) }
                for lambda in grid {
                    var sum = 0.0
                    let c = f.core(lambda), v = f.value(lambda)
                    for j in 0..<size {
                        let d = f.divided(lambda, values[j], cx: c, cy: cores[j], vx: v, vy: fs[j])
                        sum += last[j] * d
                        largest[j] = Swift.max(largest[j], abs(d))
                    }
                    psi = Swift.max(psi, abs(sum))
                }
                // Σⱼ |αⱼ| Lⱼ ‖F ŝⱼ^Q‖ ≤ ‖F‖_F · min(Σⱼ |αⱼ| Lⱼ ‖ŝⱼ^Q‖, (Σⱼ (αⱼ Lⱼ)²)^{1/2}) (the
                // second by Cauchy–Schwarz, Σⱼ ‖F ŝⱼ^Q‖² ≤ ‖F‖_F²).
                var residualTerm = 0.0, defectLinear = 0.0, defectSquares = 0.0
                for j in 0..<size {
                    residualTerm += abs(alpha[j]) * largest[j] * rPart[j]
                    defectLinear += abs(alpha[j]) * largest[j] * qPart[j]
                    defectSquares += (alpha[j] * largest[j]) * (alpha[j] * largest[j])
                }
                let defectTerm = defect * Swift.min(defectLinear, defectSquares.squareRoot())
                let lanczos = m > 0 ? h * psi : 0
                return difference + lanczos + residualTerm + defectTerm
            }
            return Bound(train: one(train), coefficients: one(coefficients), isResidual: false)
        }

        /// t = ∞: ‖b − AĈ‖ ≤ ‖β − Ĥx‖ + ‖R x^V‖ + h |x_last| + ‖F‖ ‖x^Q‖, x = (T̃⁺)⁺β.
        func regression() -> Bound {
            let size = k + m
            let x = computed { $0 > 0 ? 1 / $0 : 0 }
            // Ĥ x from its eigenpairs.
            var hx = [Double](repeating: 0, count: size)
            for j in 0..<size {
                var c = 0.0
                for i in 0..<size { c += vectors[i * size + j] * x[i] }
                c *= values[j]
                for i in 0..<size { hx[i] += vectors[i * size + j] * c }
            }
            let misfit = zip(beta, hx).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            let xq = (k..<size).reduce(0.0) { $0 + x[$1] * x[$1] }.squareRoot()
            let value = misfit + residualNorm(x[0..<k]) + (m > 0 ? h * abs(x[size - 1]) : 0) + defect * xq
            return Bound(train: value, coefficients: nil, isResidual: true)
        }
    }
}

/// The dynamics' functions of λ, all entire: a train change 1 − c(λ) or a coefficients'
/// integral (1 − c(λ))/λ, with c(λ) = e^{−aλ} or (1 − rλ)ⁿ. Their first divided
/// differences f[x, y] = (f(x) − f(y))/(x − y) are computed without cancellation: by
/// 8-point Gauss–Legendre on ∫₀¹ f′(y + t(x − y)) dt where c varies by less than a factor
/// e across [y, x] (|x − y| ≤ 1/a or 1/(r n); the rule's error is then below 1e-20
/// relative); otherwise from c's values, which then differ by that factor or more, using
/// (1 − c(x))/x − (1 − c(y))/y = (y − x)/(xy) − (c(x)/x − c(y)/y) for the integrals away
/// from 0.
struct Entire {
    enum Kind { case change, integral }
    enum Core { case decay(Double), power(Double, Double) }
    let kind: Kind
    let c: Core
    /// The λ-scale on which c varies: 1/a, or 1/(r n).
    let scale: Double

    /// 1 − e^{−aλ}: the train change of gradient flow to a.
    static func decay(_ a: Double) -> Entire { Entire(kind: .change, c: .decay(a), scale: 1 / a) }
    /// (1 − e^{−aλ})/λ = ∫₀ᵃ e^{−σλ} dσ (a at 0): its coefficients.
    static func decayIntegral(_ a: Double) -> Entire { Entire(kind: .integral, c: .decay(a), scale: 1 / a) }
    /// 1 − (1 − rλ)ⁿ: the train change after n steps.
    static func power(_ r: Double, _ n: Int) -> Entire { Entire(kind: .change, c: .power(r, Double(n)), scale: 1 / (r * Double(n))) }
    /// (1 − (1 − rλ)ⁿ)/λ = r Σ_{j<n} (1 − rλ)^j (r n at 0): its coefficients.
    static func powerSum(_ r: Double, _ n: Int) -> Entire { Entire(kind: .integral, c: .power(r, Double(n)), scale: 1 / (r * Double(n))) }

    /// 1 − (1 − z)ⁿ without cancellation for small z.
    static func powerChange(_ z: Double, _ n: Double) -> Double {
        z < 1 ? -expm1(n * log1p(-z)) : 1 - pow(1 - z, n)
    }

    func core(_ x: Double) -> Double {
        switch c {
        case .decay(let a): return exp(-a * x)
        case .power(let r, let n): return pow(1 - r * x, n)
        }
    }

    func value(_ x: Double) -> Double {
        switch (kind, c) {
        case (.change, .decay(let a)):
            return -expm1(-a * x)
        case (.change, .power(let r, let n)):
            return Entire.powerChange(r * x, n)
        case (.integral, .decay(let a)):
            let z = a * x
            return abs(z) < 1e-8 ? a * (1 - z / 2) : -expm1(-z) / x
        case (.integral, .power(let r, let n)):
            let z = r * x
            if abs(z * n) < 1e-8 { return r * n * (1 - (n - 1) * z / 2) }
            return Entire.powerChange(z, n) / x
        }
    }

    func derivative(_ x: Double) -> Double {
        switch (kind, c) {
        case (.change, .decay(let a)):
            return a * exp(-a * x)
        case (.change, .power(let r, let n)):
            return r * n * pow(1 - r * x, n - 1)
        case (.integral, .decay(let a)):
            // −∫₀ᵃ σ e^{−σx} dσ.
            let z = a * x
            if abs(z) < 1 {
                var term = 1.0, sum = 0.0
                for j in 0..<40 {
                    sum += term / Double(j + 2)
                    term *= -z / Double(j + 1)
                }
                return -a * a * sum
            }
            return -(1 - exp(-z) * (1 + z)) / (x * x)
        case (.integral, .power(let r, let n)):
            let z = r * x
            if abs(z * n) < 0.5 {
                // −r² Σ_{k≥1} k C(n, k+1) (−z)^{k−1}: term ratios (n−k−1)/(k+2) · (−z).
                var coefficient = n * (n - 1) / 2   // C(n, 2)
                var power = 1.0, sum = 0.0
                for j in 1..<80 {
                    sum += Double(j) * coefficient * power
                    coefficient *= (n - Double(j) - 1) / Double(j + 2)
                    power *= -z
                    if coefficient == 0 { break }
                }
                return -r * r * sum
            }
            return (n * z * pow(1 - z, n - 1) - Entire.powerChange(z, n)) / (x * x)
        }
    }

    /// f[x, y]; `cx`, `cy`, `vx`, `vy` are c and f at x and y (evaluated once per point by
    /// the caller: the grids are long).
    func divided(_ x: Double, _ y: Double, cx: Double, cy: Double, vx: Double, vy: Double) -> Double {
        let d = x - y
        if abs(d) <= scale {
            if d == 0 { return derivative(x) }
            let rule = GaussLegendre.eight
            var sum = 0.0
            for i in 0..<rule.nodes.count {
                sum += 0.5 * rule.weights[i] * derivative(y + 0.5 * (rule.nodes[i] + 1) * d)
            }
            return sum
        }
        switch kind {
        case .change:
            return (cy - cx) / d
        case .integral:
            if Swift.min(x, y) >= scale { return -1 / (x * y) - (cx / x - cy / y) / d }
            return (vx - vy) / d
        }
    }

    func divided(_ x: Double, _ y: Double) -> Double {
        divided(x, y, cx: core(x), cy: core(y), vx: value(x), vy: value(y))
    }
}

/// Gauss–Legendre rules on [−1, 1] (Golub–Welsch: the eigenvalues of the Jacobi matrix of
/// the Legendre polynomials, weights 2 v₁²).
enum GaussLegendre {
    static let eight = rule(8)

    static func rule(_ n: Int) -> (nodes: [Double], weights: [Double]) {
        let beta = (1..<n).map { Double($0) / (4 * Double($0 * $0) - 1).squareRoot() }
        let eigen = try! LanczosSteps.tridiagonal(alpha: [Double](repeating: 0, count: n), beta: beta)
        let weights = (0..<n).map { 2 * eigen.vectors![$0] * eigen.vectors![$0] }
        return (eigen.values, weights)
    }
}

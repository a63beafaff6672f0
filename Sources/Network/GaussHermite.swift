import Foundation

/// The n-point Gauss–Hermite rule (physicists' weight e^{-x²}):
/// ∫ f(x) e^{-x²} dx ≈ Σᵢ wᵢ f(xᵢ), exact for polynomials of degree < 2n.
///
/// The same rule as `scipy.special.roots_hermite(n)` and `numpy.polynomial.hermite.hermgauss(n)`
/// (which neural-tangents' `ElementwiseNumerical` uses), to about 1e-15 relative. The nodes
/// are the roots of Hₙ, bracketed by bisection on a Sturm count and polished by Newton's
/// method on the orthonormal recurrence p₀ = π^{-1/4}, pₖ = x √(2/k) pₖ₋₁ − √((k−1)/k) pₖ₋₂;
/// wᵢ = 2 / (pₙ'(xᵢ))² with pₙ' = √(2n) pₙ₋₁. The recurrence is rescaled by powers of two
/// as it runs, so large degrees (up to 1000, where pₙ overflows near the outer nodes) work.
/// As scipy does, nodes are made exactly antisymmetric and weights exactly symmetric, and
/// the weights are scaled to sum to √π.
public struct GaussHermiteRule: Sendable, Equatable {
    /// The nodes, ascending (x[n−1−i] = −x[i] exactly).
    public let nodes: [Double]
    /// The weights (w[n−1−i] = w[i] exactly), summing to √π.
    public let weights: [Double]

    /// The number of nodes n.
    public var degree: Int { nodes.count }

    /// The rule with `degree` nodes; `degree` must be positive.
    public init(degree n: Int) {
        precondition(n >= 1, "a Gauss–Hermite rule needs at least one node")
        var x = [Double](repeating: 0, count: n)
        var w = [Double](repeating: 0, count: n)
        // Roots in descending order, x[0] the largest: each bracketed by bisection on the
        // Sturm count (robust for any degree), then polished by Newton's method.
        let half = (n + 1) / 2
        var upper = Double(2 * n + 1).squareRoot() + 1  // every root lies below √(2n+1)
        for i in 0..<half {
            let index = n - 1 - i  // position among the roots in ascending order
            var lo = 0.0, hi = upper
            if n % 2 == 1 && i == half - 1 {
                lo = 0; hi = 0  // the middle root of odd n is exactly 0
            }
            while hi - lo > 1e-9 * Swift.max(hi, 1) {
                let mid = 0.5 * (lo + hi)
                if Self.rootsBelow(mid, degree: n) > index { hi = mid } else { lo = mid }
            }
            var z = 0.5 * (lo + hi)
            for _ in 0..<50 {
                let (p, dp, _) = Self.orthonormal(n, at: z)
                let step = p / dp
                z -= step
                if abs(step) <= 4e-16 * Swift.max(abs(z), 1) { break }
            }
            let (_, dp, exponent) = Self.orthonormal(n, at: z)
            x[i] = z
            // w = 2 / pₙ'², with pₙ' = dp · 2^exponent.
            w[i] = Foundation.scalbn(2 / (dp * dp), -2 * exponent)
            upper = z
        }
        // Ascending order, exact (anti)symmetry.
        var nodes = [Double](repeating: 0, count: n)
        var weights = [Double](repeating: 0, count: n)
        for i in 0..<half {
            nodes[n - 1 - i] = x[i]
            nodes[i] = -x[i]
            weights[n - 1 - i] = w[i]
            weights[i] = w[i]
        }
        if n % 2 == 1 { nodes[half - 1] = 0 }
        var sum = 0.0
        for v in weights { sum += v }
        let scale = Double.pi.squareRoot() / sum
        self.nodes = nodes
        self.weights = weights.map { $0 * scale }
    }

    /// The number of roots of Hₙ below λ: the negative pivots of the Jacobi matrix
    /// (diagonal 0, off-diagonal √(k/2)) minus λ I, a Sturm count.
    private static func rootsBelow(_ lambda: Double, degree n: Int) -> Int {
        var q = -lambda
        var count = q < 0 ? 1 : 0
        for k in 1..<Swift.max(n, 1) {
            if q == 0 { q = -Double.ulpOfOne * Swift.max(abs(lambda), 1) }
            q = -lambda - (Double(k) / 2) / q
            if q < 0 { count += 1 }
        }
        return count
    }

    /// pₙ(z) and pₙ'(z) = √(2n) pₙ₋₁(z) of the orthonormal recurrence, both divided by
    /// 2^exponent (a common factor, so p / p' is exact).
    private static func orthonormal(_ n: Int, at z: Double) -> (Double, Double, Int) {
        var p1 = 0.31830988618379067.squareRoot().squareRoot()  // π^{-1/4}
        var p2 = 0.0
        var exponent = 0
        for j in 1...n {
            let p3 = p2
            p2 = p1
            p1 = z * (2 / Double(j)).squareRoot() * p2 - (Double(j - 1) / Double(j)).squareRoot() * p3
            if abs(p1) > 0x1p500 {
                p1 = Foundation.scalbn(p1, -500)
                p2 = Foundation.scalbn(p2, -500)
                exponent += 500
            }
        }
        return (p1, Double(2 * n).squareRoot() * p2, exponent)
    }
}

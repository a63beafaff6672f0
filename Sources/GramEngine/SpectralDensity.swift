import Foundation
import LinearAlgebra
import Plots

/// An estimate and its standard error (from the spread over the probe vectors).
public struct Estimate: Codable, Sendable, Equatable {
    public var value: Double
    /// nil with a single probe.
    public var standardError: Double?
    enum CodingKeys: String, CodingKey { case value, standardError = "standard_error" }
}

/// What `--eigen density` records in summary.json (docs/maths.md §9): the spectral
/// diagnostics that stochastic Lanczos quadrature estimates, each with its standard error.
public struct DensitySummary: Codable, Sendable {
    public var probes: Int
    public var steps: Int
    /// Products of the distributed kernel with the block of probes (one reduction each).
    public var blockProducts: Int
    /// tr Θ = Σ λᵢ.
    public var trace: Estimate
    /// ‖Θ‖_F² = Σ λᵢ².
    public var frobeniusSquared: Estimate
    /// (Σ λᵢ)² / Σ λᵢ².
    public var participationRatio: Estimate
    /// exp(−Σ pᵢ log pᵢ), pᵢ = λᵢ / Σ λ (positive λ only).
    public var effectiveRank: Estimate
    /// The largest Ritz value: a lower bound on λ_max, converged within a few steps.
    public var lambdaMaxRitz: Double
    /// The estimated fraction of eigenvalues ≤ 0 (numerically singular directions).
    public var nonpositiveFraction: Double
    /// The Gaussian smoothing of the density, in decades of λ.
    public var smoothingDecades: Double
    /// The largest eigenvalues computed exactly (block Lanczos) and deflated from the
    /// quadrature (docs/maths.md §9).
    public var deflated: Int
    /// With --eigen-top K: α of λ_r ~ r^−α fitted over the top K eigenvalues (block
    /// Lanczos, exact to its residual), and K.
    public var decayExponent: Double?
    public var decayFitModes: Int?

    enum CodingKeys: String, CodingKey {
        case probes, steps, trace
        case blockProducts = "block_products", frobeniusSquared = "frobenius_squared"
        case participationRatio = "participation_ratio", effectiveRank = "effective_rank"
        case lambdaMaxRitz = "lambda_max_ritz", nonpositiveFraction = "nonpositive_fraction"
        case smoothingDecades = "smoothing_decades", deflated
        case decayExponent = "decay_exponent", decayFitModes = "decay_fit_modes"
    }
}

/// The spectral density of a kernel from its stochastic Lanczos quadrature rules.
public struct SpectralDensity: Sendable {
    public let result: StochasticLanczos.Result
    public let steps: Int

    public init(result: StochasticLanczos.Result, steps: Int) {
        self.result = result
        self.steps = steps
    }

    /// The diagnostics with their errors.
    public var summary: DensitySummary {
        func estimate(_ pair: (estimate: Double, standardError: Double?)) -> Estimate { Estimate(value: pair.estimate, standardError: pair.standardError) }
        let trace = result.trace { $0 }
        let frobenius = result.trace { $0 * $0 }
        let participation = result.ratio([{ $0 }, { $0 * $0 }]) { $0[1] > 0 ? $0[0] * $0[0] / $0[1] : .nan }
        // H = log T − (1/T) Σ λ log λ over the positive eigenvalues (T their sum).
        let entropy = result.ratio([{ Swift.max($0, 0) }, { $0 > 0 ? $0 * log($0) : 0 }]) { v in
            v[0] > 0 ? exp(log(v[0]) - v[1] / v[0]) : .nan
        }
        return DensitySummary(probes: result.rules.count, steps: steps, blockProducts: result.products,
                              trace: estimate(trace), frobeniusSquared: estimate(frobenius),
                              participationRatio: estimate(participation), effectiveRank: estimate(entropy),
                              lambdaMaxRitz: result.ritzRange.upperBound, nonpositiveFraction: result.cumulative(0),
                              smoothingDecades: grid.sigma, deflated: result.deflated.count, decayExponent: nil, decayFitModes: nil)
    }

    /// The log-spaced grid of λ (200 points from the smallest positive Ritz value to the
    /// largest) and the Gaussian smoothing width in decades: the span over the steps (about
    /// the spacing of one probe's nodes), at least 0.01.
    var grid: (lambdas: [Double], sigma: Double) {
        let positive = (result.rules.flatMap(\.nodes) + result.deflated).filter { $0 > 0 }
        guard let top = positive.max(), let bottom = positive.min() else { return ([], 0.01) }
        let low = log10(Swift.max(bottom, top * 1e-16)), high = log10(top)
        let span = Swift.max(high - low, 1e-3)
        let sigma = Swift.max(span / Double(steps), 0.01)
        let first = low - 2 * sigma, last = high + 2 * sigma
        let count = 200
        return ((0..<count).map { pow(10, first + (last - first) * Double($0) / Double(count - 1)) }, sigma)
    }

    /// Rows (λ, expected eigenvalues per decade at λ, expected eigenvalues ≤ λ).
    public var table: [(lambda: Double, perDecade: Double, atOrBelow: Double)] {
        let (lambdas, sigma) = grid
        let n = Double(result.n), probes = Double(max(result.rules.count, 1))
        let norm = 1 / (sigma * (2 * Double.pi).squareRoot())
        return lambdas.map { lambda in
            let t = log10(lambda)
            // Each probe's rule is a probability measure over the n − K eigenvalues not
            // deflated (as `cumulative`); the deflated ones count one each.
            let rest = Double(result.n - result.deflated.count)
            var estimated = 0.0
            for rule in result.rules {
                for (node, weight) in zip(rule.nodes, rule.weights) where node > 0 {
                    let z = (t - log10(node)) / sigma
                    estimated += rest * weight * norm * exp(-0.5 * z * z)
                }
            }
            var exact = 0.0
            for value in result.deflated where value > 0 {
                let z = (t - log10(value)) / sigma
                exact += norm * exp(-0.5 * z * z)
            }
            return (lambda, exact + estimated / probes, n * result.cumulative(lambda))
        }
    }

    /// spectrum_density.csv.
    public var csv: Data {
        var text = "lambda,eigenvalues_per_decade,eigenvalues_at_or_below\n"
        for row in table {
            text += String(format: "%.17g,%.17g,%.17g\n", row.lambda, row.perDecade, row.atOrBelow)
        }
        return Data(text.utf8)
    }

    /// The density per decade against λ (log-log).
    public var plot: SVGPlot {
        var plot = SVGPlot(title: "NTK spectral density (stochastic Lanczos quadrature)", xLabel: "eigenvalue λ",
                           yLabel: "eigenvalues per decade", xLogarithmic: true, yLogarithmic: true)
        plot.add("N φ(log_{10} λ)", table.map { (x: $0.lambda, y: $0.perDecade) }, style: .line)
        plot.notes = ["N = \(result.n); \(result.rules.count) probes x \(steps) Lanczos steps; Gaussian smoothing \(String(format: "%.3g", grid.sigma)) decades"]
        return plot
    }
}

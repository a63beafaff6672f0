import Foundation
import Testing
import LearningDynamics
import LinearAlgebra

/// Diagnostics from our eigendecomposition against numpy computed straight from the
/// matrices (`np.trace(K)`, `np.sum(K * Y Yᵀ)`, `H K H`, `eigh`).
@Suite struct SpectralDiagnosticsTests {
    static let cases = DynamicsFixtures.cases

    @Test("diagnostics agree with direct numpy computations", arguments: cases)
    func agree(fixture: DynamicsFixtures.Case) throws {
        let kernel = try fixture.matrix("kernel_train.npy")
        let y = try fixture.matrix("y_train.npy")
        let eigen = try SymmetricEigen.compute(matrix: kernel.elements, n: kernel.rows, vectors: true)
        let ours = try SpectralDiagnostics(eigen: eigen, targets: y)
        let ref = try fixture.diagnostics()
        let n = Double(ref.n), eps = Double.ulpOfOne

        // Eigenvalues from two eigensolvers differ by ~N ε λ_max in absolute terms (backward
        // stability): 100 N ε λ_max covers every eigenvalue; λ_min relative to itself is
        // then good to ~κ N ε, which bounds the condition number.
        let eigenTolerance = 100 * n * eps * ref.lambda_max
        #expect(ours.n == ref.n)
        #expect(abs(ours.lambdaMax - ref.lambda_max) <= eigenTolerance)
        #expect(abs(ours.lambdaMin - ref.lambda_min) <= eigenTolerance)
        #expect(ours.negativeEigenvalues == ref.negative_eigenvalues)
        if let reference = ref.condition_number {
            let kappa = try #require(ours.conditionNumber)
            #expect(relativeError(kappa, reference) <= 100 * n * eps * reference)
        } else {
            #expect(ours.conditionNumber == nil)
        }
        // Sums of N eigenvalues against np.trace: N ε λ_max per term.
        #expect(abs(ours.trace - ref.trace) <= eigenTolerance * n)
        // Smooth functions of the spectrum, whose inputs agree to ~1e-13 relative: 1e-11.
        #expect(relativeError(try #require(ours.effectiveRank), ref.effective_rank) <= 1e-11)
        #expect(relativeError(try #require(ours.participationRatio), ref.participation_ratio) <= 1e-11)
        #expect(relativeError(try #require(ours.stableRank), ref.stable_rank) <= 1e-11)
        #expect(ours.decayFitModes == ref.decay_fit_modes)
        // log λ of the top half of the spectrum (κ within it <= 1e3): 1e-10.
        #expect(relativeError(try #require(ours.decayExponent), ref.decay_exponent) <= 1e-10)
        // Eigen-sum form vs the Frobenius inner product of the matrices: the same value
        // through different roundings, ~N ε relative; the centred one loses up to
        // Σλ² / ‖HΘH‖² (< 1e2 here) to cancellation: 1e-12 and 1e-10.
        #expect(relativeError(try #require(ours.kernelTargetAlignment), ref.kernel_target_alignment) <= 1e-12)
        #expect(relativeError(try #require(ours.centeredKernelTargetAlignment), ref.centered_kernel_target_alignment) <= 1e-10)
        // Partial sums of (v_iᵀ y)²: eigenvectors differ by ~N ε ‖Θ‖ / gap; the smallest
        // relative gaps here are ~1e-3, so 1e-10 absolute (the sums are in [0, 1]).
        let power = try #require(ours.cumulativeLabelPower)
        #expect(power.count == ref.cumulative_label_power.count)
        var worst = 0.0
        for (a, b) in zip(power, ref.cumulative_label_power) { worst = max(worst, abs(a - b)) }
        #expect(worst <= 1e-10)
        #expect(abs((power.last ?? 0) - 1) <= 1e-13)
        print("dynamics fixture \(fixture) diagnostics: alignment \(relativeError(ours.kernelTargetAlignment ?? 0, ref.kernel_target_alignment)), centred \(relativeError(ours.centeredKernelTargetAlignment ?? 0, ref.centered_kernel_target_alignment)), label power \(worst), decay \(relativeError(ours.decayExponent ?? 0, ref.decay_exponent))")
    }

    @Test("values-only diagnostics leave the target relations out; JSON keys are snake_case")
    func valuesOnly() throws {
        let d = try SpectralDiagnostics(eigenvalues: [-1e-16, 0.5, 1, 4])
        #expect(d.conditionNumber == nil)
        #expect(d.negativeEigenvalues == 1)
        #expect(d.kernelTargetAlignment == nil && d.cumulativeLabelPower == nil)
        // ‖Θ‖_F² / ‖Θ‖₂² = Σλ² / λ_max² (the issue "researcher's workflow" changed it from trace / λ_max).
        #expect(d.stableRank == 1 + (1.0 / 4) * (1.0 / 4) + (0.5 / 4) * (0.5 / 4) + (1e-16 / 4) * (1e-16 / 4))
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(d)) as? [String: Any]
        let keys = Set(json?.keys.map { $0 } ?? [])
        #expect(keys == ["n", "lambda_min", "lambda_max", "trace", "negative_eigenvalues", "effective_rank",
                         "participation_ratio", "stable_rank", "decay_exponent", "decay_fit_modes"])
        let back = try JSONDecoder().decode(SpectralDiagnostics.self, from: JSONEncoder().encode(d))
        #expect(back == d)
    }

    @Test("closed forms: a flat spectrum has effective rank = participation ratio = N; λ_r = r^-2 has decay 2")
    func closedForms() throws {
        let flat = try SpectralDiagnostics(eigenvalues: [Double](repeating: 3, count: 7))
        #expect(abs(try #require(flat.effectiveRank) - 7) <= 1e-13)
        #expect(abs(try #require(flat.participationRatio) - 7) <= 1e-13)
        #expect(abs(try #require(flat.conditionNumber) - 1) == 0)
        let power = try SpectralDiagnostics(eigenvalues: (1...10).reversed().map { 1 / Double($0 * $0) }, decayFitModes: 10)
        #expect(power.decayFitModes == 10)
        #expect(abs(try #require(power.decayExponent) - 2) <= 1e-13)
    }

    @Test("bad spectra are refused")
    func refused() {
        #expect(throws: DynamicsError.notAscending(index: 1)) { try SpectralDiagnostics(eigenvalues: [2, 1]) }
        #expect(throws: DynamicsError.shape("the spectrum is empty")) { try SpectralDiagnostics(eigenvalues: []) }
        #expect(throws: DynamicsError.nonFinite(name: "the eigenvalues", row: 1, column: 0)) {
            try SpectralDiagnostics(eigenvalues: [1, .nan])
        }
    }
}

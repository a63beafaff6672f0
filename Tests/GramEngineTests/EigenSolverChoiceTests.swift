import Testing
@testable import GramEngine

/// `--eigen-solver auto`: which solver it stands for, by the documented rule
/// (docs/cluster.md, "Eigensolvers").
@Suite struct EigenSolverChoiceTests {
    @Test("auto: krylov for the top K with 10 K ≤ N, else lapack; explicit choices stay")
    func resolution() {
        #expect(EigenSolver.auto.resolved(order: 1000, top: 100) == .krylov)
        #expect(EigenSolver.auto.resolved(order: 999, top: 100) == .lapack)
        #expect(EigenSolver.auto.resolved(order: 1000, top: nil) == .lapack)
        #expect(EigenSolver.elpa.resolved(order: 1000, top: nil) == .elpa)
        #expect(EigenSolver.scalapack.resolved(order: 1000, top: 5) == .scalapack)
    }

    @Test("the whole spectrum: LAPACK while its plan fits rank 0's node and LAPACK's 32-bit limits; beyond, on 2+ ranks, ELPA for values and ScaLAPACK with vectors")
    func wholeSpectrum() {
        let gib = 1 << 30
        // Fits: LAPACK, whatever the rank count.
        #expect(EigenSolver.automaticFullSpectrum(order: 8000, vectors: false, ranks: 2, lapackNodeBytes: 2 * gib, available: 20 * gib) == .lapack)
        #expect(EigenSolver.automaticFullSpectrum(order: 8000, vectors: true, ranks: 8, lapackNodeBytes: 2 * gib, available: nil) == .lapack)
        // Rank 0's node too small: a distributed solver; on one rank LAPACK (the plan refuses).
        #expect(EigenSolver.automaticFullSpectrum(order: 8000, vectors: false, ranks: 2, lapackNodeBytes: 21 * gib, available: 20 * gib) == .elpa)
        #expect(EigenSolver.automaticFullSpectrum(order: 8000, vectors: true, ranks: 2, lapackNodeBytes: 21 * gib, available: 20 * gib) == .scalapack)
        // The top K that auto leaves to LAPACK (10 K > N): ScaLAPACK's pdsyevr, not ELPA.
        #expect(EigenSolver.automaticFullSpectrum(order: 8000, vectors: false, top: 900, ranks: 2, lapackNodeBytes: 21 * gib, available: 20 * gib) == .scalapack)
        #expect(EigenSolver.automaticFullSpectrum(order: 8000, vectors: false, ranks: 1, lapackNodeBytes: 21 * gib, available: 20 * gib) == .lapack)
        // Past LAPACK's 32-bit sizes: ELPA even with memory to spare.
        #expect(EigenSolver.automaticFullSpectrum(order: 46_340, vectors: false, ranks: 4, lapackNodeBytes: 0, available: nil) == .lapack)
        #expect(EigenSolver.automaticFullSpectrum(order: 46_341, vectors: false, ranks: 4, lapackNodeBytes: 0, available: nil) == .elpa)
        #expect(EigenSolver.automaticFullSpectrum(order: 32_767, vectors: true, ranks: 4, lapackNodeBytes: 0, available: nil) == .scalapack)
    }

    @Test("the memory plan gives ELPA ScaLAPACK's distributed estimate, and no rank the whole kernel")
    func memory() {
        func plan(_ solver: EigenSolver) -> MemoryPlan {
            MemoryPlan.estimate(n: 20_000, m: nil, inputWidth: 64, outputs: 1, outputKernel: .mean, eigen: .vectors, solver: solver,
                                ranks: 8, tileSize: 256, perSampleBytes: 1000, cacheBytes: 1 << 20)
        }
        #expect(plan(.elpa) == plan(.scalapack))
        #expect(plan(.elpa).rank0Bytes < plan(.lapack).rank0Bytes / 4)
    }
}

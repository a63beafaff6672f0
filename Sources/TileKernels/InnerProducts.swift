import CCPU
import Foundation
import TileKernelsAVX2
import TileKernelsAVX512
import TileKernelsBaseline

/// The tile kernels for this CPU, chosen at run time.
///
/// The kernels (`Sources/TileKernelsSource`) are compiled three times, each for one
/// instruction set: AVX-512 (`TileKernelsAVX512`), AVX2 with FMA (`TileKernelsAVX2`) and
/// baseline x86-64 (`TileKernelsBaseline`). The first call picks the best one this CPU
/// runs (as OpenBLAS and BLIS pick theirs), so one binary runs on every node of a
/// cluster whatever CPU built it. `NTK_TILE_ISA=avx512|avx2|baseline` asks for a lower
/// one (for comparisons; a level this CPU cannot run is not taken).
///
/// AVX-512 and AVX2 compute every entry as the same chain of fused multiply-adds, so
/// their kernels are bitwise equal; the baseline kernels multiply and add separately
/// (rounding differs at the last bits).
public enum InnerProducts {
    public enum Level: String, Sendable, CaseIterable {
        case avx512, avx2, baseline
    }

    /// The levels this CPU runs, best first.
    public static var supportedLevels: [Level] {
        var levels: [Level] = []
        if ntk_cpu_has_avx512() != 0 { levels.append(.avx512) }
        if ntk_cpu_has_avx2_fma() != 0 { levels.append(.avx2) }
        levels.append(.baseline)
        return levels
    }

    /// The kernels in use: the best this CPU runs, or NTK_TILE_ISA's if it runs it.
    public static let level: Level = {
        let supported = supportedLevels
        if let requested = ProcessInfo.processInfo.environment["NTK_TILE_ISA"].flatMap(Level.init(rawValue:)),
           supported.contains(requested) {
            return requested
        }
        return supported[0]
    }()

    /// The instruction set of the kernels in use, for reports.
    public static var instructionSet: String {
        switch level {
        case .avx512: return TileKernelsAVX512.InnerProducts.instructionSet
        case .avx2: return TileKernelsAVX2.InnerProducts.instructionSet
        case .baseline: return TileKernelsBaseline.InnerProducts.instructionSet
        }
    }

    /// C[i * ldc + j] = <A row i, B row j> for i < m, j < n (see the kernels' documentation,
    /// `Sources/TileKernelsSource/InnerProducts.swift`).
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Double>, lda: Int,
                                          b: UnsafePointer<Double>, ldb: Int,
                                          c: UnsafeMutablePointer<Double>, ldc: Int,
                                          upperFrom: Int = 0) {
        switch level {
        case .avx512:
            TileKernelsAVX512.InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, upperFrom: upperFrom)
        case .avx2:
            TileKernelsAVX2.InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, upperFrom: upperFrom)
        case .baseline:
            TileKernelsBaseline.InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, upperFrom: upperFrom)
        }
    }

    /// C[i * ldc + j] = Σ_p A[i * lda + p] · B[p * ldb + j]: A B with B row-major (k x n).
    public static func multiply(m: Int, n: Int, k: Int,
                                a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int,
                                c: UnsafeMutablePointer<Double>, ldc: Int) {
        switch level {
        case .avx512: TileKernelsAVX512.InnerProducts.multiply(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        case .avx2: TileKernelsAVX2.InnerProducts.multiply(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        case .baseline: TileKernelsBaseline.InnerProducts.multiply(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        }
    }

    /// C[i * ldc + j] = <A row i, B row j> for float32 rows, into a float64 C.
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Float>, lda: Int,
                                          b: UnsafePointer<Float>, ldb: Int,
                                          c: UnsafeMutablePointer<Double>, ldc: Int) {
        switch level {
        case .avx512: TileKernelsAVX512.InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        case .avx2: TileKernelsAVX2.InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        case .baseline: TileKernelsBaseline.InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        }
    }

    /// <x, y> over k elements: the same chain as every entry of `multiplyTransposed`.
    public static func dot(k: Int, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>) -> Double {
        switch level {
        case .avx512: return TileKernelsAVX512.InnerProducts.dot(k: k, x, y)
        case .avx2: return TileKernelsAVX2.InnerProducts.dot(k: k, x, y)
        case .baseline: return TileKernelsBaseline.InnerProducts.dot(k: k, x, y)
        }
    }
}
